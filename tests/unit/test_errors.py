"""The error table: every GatewayError renders OpenAI's and Anthropic's shapes."""

from __future__ import annotations

import pytest

from crabllm_sync import errors

TABLE = [
    (
        errors.InvalidRequestError("bad"),
        400,
        "invalid_request_error",
        "invalid_request_error",
    ),
    (errors.InvalidApiKeyError("no"), 401, "invalid_request_error", "invalid_api_key"),
    (errors.ModelNotAllowedError("no"), 403, "permission_error", "model_not_allowed"),
    (errors.ModelNotFoundError("no"), 404, "invalid_request_error", "model_not_found"),
    (
        errors.RequestTooLargeError("big"),
        413,
        "invalid_request_error",
        "request_too_large",
    ),
    (
        errors.RateLimitError("slow", retry_after=2.5),
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    ),
    (
        errors.QuotaExceededError("spent"),
        429,
        "insufficient_quota",
        "insufficient_quota",
    ),
    (
        errors.AllDeploymentsFailedError("x", http_status=502),
        502,
        "api_error",
        "upstream_error",
    ),
    (
        errors.AllDeploymentsFailedError("x", http_status=503),
        503,
        "api_error",
        "upstream_error",
    ),
    (
        errors.AllDeploymentsFailedError("x", http_status=504),
        504,
        "api_error",
        "upstream_timeout",
    ),
    (
        errors.UpstreamError("p: bad param", upstream_status=422),
        422,
        "api_error",
        "upstream_error",
    ),
]


@pytest.mark.parametrize(("err", "status", "type_", "code"), TABLE)
def test_openai_shape(err, status, type_, code):
    body = errors.to_openai(err)
    assert err.http_status == status
    assert body == {
        "error": {
            "message": err.message,
            "type": type_,
            "param": err.param,
            "code": code,
        }
    }


def test_rate_limit_carries_retry_after_rounded_up():
    assert errors.RateLimitError("x", retry_after=2.1).headers["Retry-After"] == "3"


@pytest.mark.parametrize("status", [401, 403])
def test_provider_auth_failure_is_a_502_not_the_clients_fault(status):
    err = errors.UpstreamError("p: auth", upstream_status=status)
    assert err.http_status == 502 and not err.is_transient


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_upstream_statuses(status):
    assert errors.UpstreamError("x", upstream_status=status).is_transient


def test_anthropic_shape():
    body = errors.to_anthropic(errors.InvalidApiKeyError("nope"))
    assert body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "nope"},
    }
