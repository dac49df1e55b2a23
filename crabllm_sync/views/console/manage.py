"""Console routes that change something: sign in and out, create, update
and revoke keys. Every POST has passed the CSRF check (the blueprint's
before_request); a new key's secret is shown once, in the POST's answer."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from crabllm_sync.errors import GatewayError, InvalidApiKeyError
from crabllm_sync.gateway import Gateway
from crabllm_sync.keys.model import KeyUpdate, NewKey, check_name, parse_body
from crabllm_sync.storage.memory import refuse_unshared
from crabllm_sync.views.console import data, session

FORM_LIMITS = ("requests_per_minute", "tokens_per_minute")


def add_routes(bp: Blueprint, gw: Gateway) -> None:
    @bp.get("/login")
    def login() -> Any:
        if g.viewer is not None:
            return redirect(url_for("console.overview"))
        return render_template("ui/login.html", viewer=None, error=None)

    @bp.post("/login")
    def sign_in() -> Any:
        try:
            viewer = session.sign_in(gw, request.form.get("token", ""))
        except InvalidApiKeyError as err:
            page = render_template("ui/login.html", viewer=None, error=err.message)
            return make_response(page, 401)
        return redirect(
            url_for("console.overview" if viewer.is_admin else "console.me")
        )

    @bp.post("/logout")
    def sign_out() -> Any:
        session.sign_out()
        return redirect(url_for("console.login"))

    @bp.get("/keys")
    def keys() -> str:
        return _keys_page(gw)

    @bp.post("/keys")
    def create_key() -> Any:
        _shared(gw)
        form = request.form
        try:
            spec = parse_body(
                NewKey, {"name": form.get("name", "").strip(), **_limits(form)}
            )
            record, secret = gw.keys.create(spec)
        except GatewayError as err:
            if err.http_status >= 500:
                raise
            return make_response(_keys_page(gw, error=err.message, form=form), 400)
        gw.auth.forget()
        return render_template(
            "ui/key_created.html", viewer=g.viewer, record=record, secret=secret
        )

    @bp.get("/keys/<name>")
    def key(name: str) -> str:
        return _key_page(gw, check_name(name))

    @bp.post("/keys/<name>")
    def update_key(name: str) -> Any:
        _shared(gw)
        check_name(name)
        try:
            changes = parse_body(KeyUpdate, _limits(request.form))
            gw.keys.update(name, changes)
        except GatewayError as err:
            if err.http_status >= 500 or err.http_status == 404:
                raise
            return make_response(_key_page(gw, name, error=err.message), 400)
        gw.auth.forget()
        return redirect(url_for("console.key", name=name, saved=1))

    @bp.post("/keys/<name>/revoke")
    def revoke_key(name: str) -> Any:
        _shared(gw)
        gw.keys.revoke(check_name(name))
        gw.auth.forget()
        return redirect(url_for("console.key", name=name))


def _shared(gw: Gateway) -> None:
    if gw.db is None:  # keys in this process only
        refuse_unshared(request.environ, "key management")


def _keys_page(gw: Gateway, error: str | None = None, form: Any = None) -> str:
    now = gw.clock()
    return render_template(
        "ui/keys.html",
        viewer=g.viewer,
        keys=data.keys(gw, _store(gw), now),
        error=error,
        form=form or {},
    )


def _key_page(gw: Gateway, name: str, error: str | None = None) -> str:
    now = gw.clock()
    record = gw.keys.get(name)
    return render_template(
        "ui/key.html",
        viewer=g.viewer,
        key=data.key_view(gw, record, now, store=_store(gw)),
        error=error,
        saved=request.args.get("saved") == "1",
    )


def _store(gw: Gateway) -> Any:
    from crabllm_sync.views.console.pages import store_of

    return store_of(gw)


def _limits(form: Any) -> dict[str, Any]:
    """The key fields of a form: empty means none (null) on update."""
    out: dict[str, Any] = {}
    models = [m.strip() for m in form.get("models", "").split(",") if m.strip()]
    out["models"] = models or ["*"]
    out["rate_limit"] = {f: _number(form, f, int) for f in FORM_LIMITS}
    out["budget"] = _number(form, "budget", float)
    out["max_parallel_requests"] = _number(form, "max_parallel_requests", int)
    # An <input type=date> value: pydantic reads it as that day's UTC midnight.
    out["expires_at"] = form.get("expires_at", "").strip() or None
    return out


def _number(form: Any, field: str, kind: type) -> Any:
    raw = form.get(field, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        return raw  # pydantic names the field and says what it wants
