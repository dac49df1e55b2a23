"""Console sign-in: a signed session cookie and a CSRF token per session.

The cookie is Flask's signed session, with a secret derived from the admin
token (changing the token signs everyone out), HttpOnly, SameSite=Lax,
Secure when the request came over https, scoped to /ui and valid
SESSION_HOURS. It holds the role (admin or key), the key's name and hash for
a key (re-checked on every page: a revoked key is signed out at once) and
the CSRF token every form posts back. No secret is ever put in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSessionInterface

from crabllm_sync.errors import GatewayError, InvalidApiKeyError
from crabllm_sync.gateway import Gateway
from crabllm_sync.keys.model import KeyRecord, hash_key

COOKIE = "crabllm_console"
SESSION_HOURS = 12
CSRF_FIELD = "csrf_token"


class CsrfError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "csrf_failed"


class _Cookies(SecureCookieSessionInterface):
    """Secure exactly when the browser reached us over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request and request.is_secure)


def configure(app: Flask, admin_token: str) -> None:
    """Sign console sessions with a key derived from the admin token."""
    app.secret_key = hmac.new(
        admin_token.encode(), b"crabllm-console-session", hashlib.sha256
    ).hexdigest()
    app.session_interface = _Cookies()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_PATH="/ui",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the admin, or one virtual key (read-only, its own data)."""

    is_admin: bool
    key: str | None = None  # the key's name when not admin


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(req: Request) -> None:
    """Every POST carries the session's token in a hidden field."""
    sent = req.form.get(CSRF_FIELD, "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfError(
            "the form's security token is missing or stale: "
            "reload the page and try again"
        )


def sign_in(gw: Gateway, secret: str) -> Viewer:
    """Start a session for the admin token or an active virtual key."""
    secret = secret.strip()
    if not secret:
        raise InvalidApiKeyError("enter the admin token or a virtual key")
    if gw.auth.is_admin_secret(secret):
        viewer = Viewer(is_admin=True)
        _start({"role": "admin"})
        return viewer
    principal = gw.auth.principal(secret)  # InvalidApiKeyError when it may not call
    if principal.name is None:
        raise InvalidApiKeyError("this gateway has no keys to sign in with")
    _start({"role": "key", "key": principal.name, "kh": hash_key(secret)})
    return Viewer(is_admin=False, key=principal.name)


def _start(fields: dict[str, str]) -> None:
    session.clear()  # a new session id and CSRF token at every sign-in
    session.permanent = True
    session.update(fields, at=time.time(), csrf=secrets.token_urlsafe(32))


def sign_out() -> None:
    session.clear()


def current(gw: Gateway) -> Viewer | None:
    """The signed-in viewer, or None (a key no longer active signs out)."""
    role = session.get("role")
    if role == "admin":
        return Viewer(is_admin=True)
    if role == "key":
        record = gw.keys.find(session.get("kh", ""))
        if record is not None and _active(gw, record, session.get("key")):
            return Viewer(is_admin=False, key=record.name)
        session.clear()
    return None


def _active(gw: Gateway, record: KeyRecord, name: str | None) -> bool:
    return record.name == name and record.status(gw.clock()) == "active"
