"""Operations endpoints with no auth: /health."""

from __future__ import annotations

from flask import Blueprint, Response

from crabllm_sync.gateway import Gateway
from crabllm_sync.views import json_response


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("ops", __name__)

    @bp.get("/health")
    def health() -> Response:
        return json_response({"status": "ok"})

    return bp
