"""Admin API for providers: /v1/admin/providers (list, add) and
/v1/admin/providers/{name} (show, change, remove), admin token only.

Secrets are write-only: every answer masks them (`sk-...abcd`). Providers from
the config file are listed and shown (`"source": "config"`) but not changed.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from crabllm_sync.catalog.spec import parse_spec
from crabllm_sync.errors import InvalidRequestError
from crabllm_sync.gateway import Gateway
from crabllm_sync.views import json_response, read_json

NO_STORE = {"Cache-Control": "no-store"}


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("providers", __name__)

    @bp.before_request
    def require_admin() -> None:
        gw.auth.require_admin_route(request.headers)

    @bp.get("/v1/admin/providers")
    def list_providers() -> Response:
        data = gw.catalog.list()
        return json_response({"object": "list", "data": data}, headers=NO_STORE)

    @bp.post("/v1/admin/providers")
    def add_provider() -> Response:
        body = read_json(request)
        spec = parse_spec(body)
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidRequestError("'name': is required", param="name")
        return json_response(gw.catalog.create(name, spec), 201, NO_STORE)

    @bp.get("/v1/admin/providers/<name>")
    def show_provider(name: str) -> Response:
        return json_response(gw.catalog.get(name), headers=NO_STORE)

    @bp.patch("/v1/admin/providers/<name>")
    def change_provider(name: str) -> Response:
        changes = parse_spec(read_json(request), partial=True)
        return json_response(gw.catalog.update(name, changes), headers=NO_STORE)

    @bp.delete("/v1/admin/providers/<name>")
    def remove_provider(name: str) -> Response:
        return json_response(gw.catalog.delete(name), headers=NO_STORE)

    return bp
