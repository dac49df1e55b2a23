"""Gunicorn config: `gunicorn -c gunicorn.conf.py crabllm_sync.wsgi`.

The settings live in crabllm_sync/serving/gunicorn_conf.py (also usable
without this file as `-c python:crabllm_sync.serving.gunicorn_conf`), shared
with `crabllm-sync serve`.
"""

from crabllm_sync.serving.gunicorn_conf import *  # noqa: F403
