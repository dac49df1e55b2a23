"""`gunicorn -c python:crabllm_sync.gunicorn_conf`: kept for configs and docs
that name it; the settings module is crabllm_sync.serving.gunicorn_conf."""

from crabllm_sync.serving.gunicorn_conf import *  # noqa: F403
