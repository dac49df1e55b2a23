"""The benchmark: a fast mock upstream, an open-loop load generator and a runner.

Not part of the gateway package and not run by `make test`; `make bench` runs it.
"""
