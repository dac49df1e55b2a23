"""Providers managed at run time: added, changed and removed through the admin
API or the CLI, stored in the SQL database, served by every worker.

spec.py (pure: bodies, checks, masking), store.py (the table and its version
stamp), live.py (build, check and swap the registry; the poller), cli.py.
"""
