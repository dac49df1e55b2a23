"""Admin API: /v1/admin/keys (create, list, show, update, revoke), admin token only.

Off (404) when no admin_token is configured. Refused (409) when keys live in
memory and several worker processes serve the app: a key made or revoked in
one worker would not exist, or still work, in the others.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from crabllm_sync.gateway import Gateway
from crabllm_sync.keys.model import KeyUpdate, NewKey, check_name, parse_body
from crabllm_sync.storage.memory import refuse_unshared
from crabllm_sync.views import json_response, read_json


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("admin", __name__)

    @bp.before_request
    def require_admin() -> None:
        gw.auth.require_admin_route(request.headers)
        if gw.db is None:  # keys in this process only
            refuse_unshared(request.environ, "the admin key API")

    @bp.post("/v1/admin/keys")
    def create_key() -> Response:
        spec = parse_body(NewKey, read_json(request))
        record, secret = gw.keys.create(spec)
        gw.auth.forget()  # this worker at once; the others within the cache TTL
        body = {**record.to_json(gw.clock()), "key": secret}
        return json_response(body, 201, {"Cache-Control": "no-store"})

    @bp.get("/v1/admin/keys")
    def list_keys() -> Response:
        now = gw.clock()
        data = [r.to_json(now) for r in gw.keys.list()]
        return json_response({"object": "list", "data": data})

    @bp.get("/v1/admin/keys/<name>")
    def show_key(name: str) -> Response:
        return json_response(gw.keys.get(check_name(name)).to_json(gw.clock()))

    @bp.patch("/v1/admin/keys/<name>")
    def update_key(name: str) -> Response:
        check_name(name)
        changes = parse_body(KeyUpdate, read_json(request))
        record = gw.keys.update(name, changes)
        gw.auth.forget()
        return json_response(record.to_json(gw.clock()))

    @bp.delete("/v1/admin/keys/<name>")
    def revoke_key(name: str) -> Response:
        record = gw.keys.revoke(check_name(name))
        gw.auth.forget()
        return json_response(record.to_json(gw.clock()))

    return bp
