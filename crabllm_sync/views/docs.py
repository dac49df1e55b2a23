"""GET /docs: the API reference, /openapi.json rendered by the vendored
Swagger UI (static/vendor/swagger-ui, no CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, render_template


def make_blueprint() -> Blueprint:
    bp = Blueprint("docs", __name__)

    @bp.get("/docs")
    def docs() -> Response:
        return Response(render_template("ui/docs.html"), mimetype="text/html")

    return bp
