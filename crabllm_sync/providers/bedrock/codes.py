"""Bedrock error codes -> the gateway's UpstreamError (pure): used for exception
events inside a stream and for botocore's ClientError alike.
"""

from __future__ import annotations

from typing import Any

from crabllm_sync.errors import (
    UpstreamError,
    UpstreamTimeoutError,
)
from crabllm_sync.providers.bedrock.messages import PROVIDER

# Error codes (botocore's Error.Code) -> the status we report upstream.
AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
    }
)

ERROR_STATUS = {
    "throttlingexception": 429,
    "modelnotreadyexception": 429,
    "servicequotaexceededexception": 429,
    "validationexception": 400,
    "resourcenotfoundexception": 404,
    "serviceunavailableexception": 503,
    "internalserverexception": 500,
    "modelerrorexception": 502,
    "modelstreamerrorexception": 502,
}

TIMEOUT_CODES = frozenset({"modeltimeoutexception"})


def stream_error(code: str, payload: dict[str, Any]) -> UpstreamError:
    """The UpstreamError for an exception event inside a ConverseStream."""
    message = payload.get("message") or payload.get("Message") or code
    return _coded_error(PROVIDER, code, message, None, None)


def _coded_error(
    provider: str,
    code: str,
    message: str,
    status: int | None,
    retry_after: float | None,
) -> UpstreamError:
    if code in AUTH_CODES or status in (401, 403):
        return UpstreamError(
            f"{provider}: authentication with the provider failed: {code}: {message}",
            provider=provider,
            upstream_status=status if status in (401, 403) else 403,
        )
    lowered = code.lower()
    if lowered in TIMEOUT_CODES:
        return UpstreamTimeoutError(
            f"{provider}: {code}: {message}", provider=provider, upstream_status=408
        )
    upstream = ERROR_STATUS.get(lowered, status or 502)
    return UpstreamError(
        f"{provider}: {code}: {message}" if code else f"{provider}: {message}",
        provider=provider,
        upstream_status=upstream,
        retry_after=retry_after,
    )
