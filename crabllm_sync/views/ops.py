"""Operations endpoints: /health (open), and its deployment detail (admin)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import asdict

from flask import Blueprint, Response, request

from crabllm_sync.auth import bearer, hash_key
from crabllm_sync.errors import InvalidApiKeyError, PermissionDeniedError
from crabllm_sync.gateway import Gateway
from crabllm_sync.views import json_response


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("ops", __name__)

    @bp.get("/health")
    def health() -> Response:
        if request.args.get("detail", "").lower() not in ("1", "true", "yes"):
            return json_response({"status": "ok"})
        _require_admin(gw.config.admin_token, request.headers)
        return json_response(
            {
                "status": "ok",
                "deployments": [asdict(h) for h in gw.health.snapshot()],
            }
        )

    return bp


def _require_admin(admin_token: str | None, headers: Mapping[str, str]) -> None:
    """The deployment detail names providers and models: admin token only."""
    if not admin_token:
        raise PermissionDeniedError("deployment detail needs admin_token in the config")
    secret = bearer(headers)
    if secret is None or not hmac.compare_digest(
        hash_key(secret), hash_key(admin_token)
    ):
        raise InvalidApiKeyError("/health?detail=1 needs the admin token")
