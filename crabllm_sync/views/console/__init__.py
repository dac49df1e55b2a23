"""The operator console at /ui: server-rendered pages (Jinja templates in
templates/ui/, static files in static/), one blueprint.

Admin pages: overview, keys (create, update, revoke), usage and spend,
request log, providers and routing. A virtual key signs in to a read-only
page of its own usage, budget and log. Off (a page saying so) without an
admin_token, which also signs the session cookie (session.py).
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from crabllm_sync.errors import GatewayError, NotFoundError, PermissionDeniedError
from crabllm_sync.gateway import Gateway
from crabllm_sync.views.console import filters, manage, pages, session

PUBLIC = {"console.login", "console.sign_in"}


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("console", __name__, url_prefix="/ui")
    token = gw.config.admin_token

    @bp.record_once
    def _setup(state: Any) -> None:
        if token:
            session.configure(state.app, token)

    @bp.before_request
    def require_viewer() -> Response | None:
        if not token:
            raise NotFoundError(
                "the console is off: set admin_token in the config to enable it"
            )
        if request.method == "POST":
            session.check_csrf(request)
        g.viewer = session.current(gw)
        if g.viewer is None and request.endpoint not in PUBLIC:
            return redirect(url_for("console.login"))
        if (
            g.viewer is not None
            and not g.viewer.is_admin
            and request.endpoint not in pages.KEY_PAGES | PUBLIC | {"console.sign_out"}
        ):
            if request.endpoint == "console.overview":
                return redirect(url_for("console.me"))
            raise PermissionDeniedError("this page is for the admin token only")
        return None

    @bp.after_request
    def no_store(resp: Response) -> Response:
        # Pages show keys, spend and request details: never cache them.
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "same-origin"
        return resp

    @bp.app_context_processor
    def helpers() -> dict[str, Any]:
        return {"csrf_token": session.csrf_token, "csrf_field": session.CSRF_FIELD}

    @bp.errorhandler(GatewayError)
    def error_page(err: GatewayError) -> Response:
        resp = make_response(
            render_template("ui/error.html", error=err, viewer=g.get("viewer")),
            err.http_status,
        )
        return resp

    filters.register(bp)
    manage.add_routes(bp, gw)
    pages.add_routes(bp, gw)
    return bp
