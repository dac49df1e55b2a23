"""The one error tree: every failure the gateway reports, with its HTTP status.

Rendering to OpenAI's and Anthropic's error JSON happens here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error the gateway answers with; carries its outcome."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    code: ClassVar[str | None] = "internal_error"
    is_transient: ClassVar[bool] = False
    # True when the provider may have done (and will charge for) the work even
    # though no answer came back: the attempt is charged at its reserved estimate.
    billable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]  # instance override of the ClassVar
        self.headers: dict[str, str] = headers or {}

    @property
    def http_status(self) -> int:
        return self.status

    def redact(self, secrets: Iterable[str]) -> None:
        """Cut each of `secrets` out of the message (see `redact`)."""
        message = redact(self.message, secrets)
        if message != self.message:
            self.message = message
            self.args = (message,)


MIN_SECRET = 8  # shorter values are not worth hiding (and would mangle text)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced by `[redacted]`.

    Providers sometimes repeat the credential they were sent in an error
    message. This runs on the provider's whole text, before any cut to length
    and before any log line, so a long key is never split past recognition.
    """
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


class InternalError(GatewayError):
    """A bug: an exception that is not a GatewayError, met after admission.

    The request ends with it like any failure (extensions' on_error gives back
    what on_request took); the original exception is its __cause__.
    """

    MESSAGE: ClassVar[str] = "internal server error; see the gateway log"

    def __init__(self, message: str = MESSAGE, **kw: Any) -> None:
        super().__init__(message, **kw)


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request_error"


class UnsupportedError(InvalidRequestError):
    """A parameter or endpoint the chosen provider cannot serve."""

    code = "unsupported_parameter"


def unsupported_param(param: str, provider: str, why: str = "") -> UnsupportedError:
    """A request field `provider` (its name as a client reads it) cannot serve."""
    detail = f": {why}" if why else ""
    return UnsupportedError(
        f"'{param}' is not supported by {provider}{detail}", param=param
    )


def invalid_param(param: str, why: str) -> InvalidRequestError:
    """A request field whose value is wrong whichever provider serves it."""
    return InvalidRequestError(f"'{param}': {why}", param=param)


class InvalidApiKeyError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ModelNotAllowedError(PermissionDeniedError):
    code = "model_not_allowed"


class NotFoundError(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class MethodNotAllowedError(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class ConflictError(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RequestTooLargeError(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimitError(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    is_transient = True

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.headers.setdefault("Retry-After", str(max(1, int(retry_after + 0.999))))


class QuotaExceededError(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class ServiceUnavailableError(GatewayError):
    """Our own dependency (storage) is down, or every deployment is cooling down."""

    status = 503
    type = "api_error"
    code = "service_unavailable"
    is_transient = True


class UpstreamError(GatewayError):
    """A provider failed. `upstream_status` is what it answered (None: no answer)."""

    status = 502
    type = "api_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.upstream_status = upstream_status
        self.provider = provider
        self.retry_after = retry_after

    @property
    def is_transient(self) -> bool:  # type: ignore[override]
        return (
            self.upstream_status is None or self.upstream_status in TRANSIENT_STATUSES
        )

    @property
    def http_status(self) -> int:
        s = self.upstream_status
        # A provider's own 4xx is the client's problem and is passed on, except
        # auth failures: the client's key is not what the provider refused.
        if s is not None and 400 <= s < 500 and s not in (401, 403, 407, 429):
            return s
        return 502


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"

    @property
    def is_transient(self) -> bool:  # type: ignore[override]
        return True

    @property
    def http_status(self) -> int:
        return 504


class UpstreamReadTimeoutError(UpstreamTimeoutError):
    """The request was sent and no answer came in time.

    The provider may still be generating (and will bill it), so this is not a
    sign of a dead deployment: it is not retried, not counted by the circuit
    breaker, and the attempt is charged at its reserved estimate.
    """

    billable = True

    @property
    def is_transient(self) -> bool:  # type: ignore[override]
        return False


class AllDeploymentsFailedError(UpstreamError):
    """Raised by routing after every deployment was tried; status chosen by outcome."""

    def __init__(
        self, message: str, *, http_status: int, billable: bool = False, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self._http_status = http_status
        self.billable = billable  # type: ignore[misc]  # instance override
        if http_status == 504:
            self.code = "upstream_timeout"  # type: ignore[misc]

    @property
    def http_status(self) -> int:
        return self._http_status


TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def to_openai(err: GatewayError) -> dict[str, Any]:
    """OpenAI's error body."""
    return {
        "error": {
            "message": err.message,
            "type": err.type,
            "param": err.param,
            "code": err.code,
        }
    }


def to_anthropic(err: GatewayError) -> dict[str, Any]:
    """Anthropic's error body."""
    return {
        "type": "error",
        "error": {
            "type": _ANTHROPIC_TYPES.get(err.http_status, _anthropic_default(err)),
            "message": err.message,
        },
    }


def _anthropic_default(err: GatewayError) -> str:
    # A 4xx Anthropic has no type for (405, 409) is still the client's error.
    return "invalid_request_error" if 400 <= err.http_status < 500 else "api_error"


def from_http_status(status: int, message: str) -> GatewayError:
    """The error for a werkzeug HTTPException (unknown route, 405, 413)."""
    cls = {
        404: NotFoundError,
        405: MethodNotAllowedError,
        413: RequestTooLargeError,
    }.get(status)
    if cls is not None:
        return cls(message)
    if 400 <= status < 500:
        return InvalidRequestError(message)
    return GatewayError(message)
