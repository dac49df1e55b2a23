"""A read timeout is not a dead deployment; the effective timeout of an attempt.

call_with_retries with a real Health on MemoryStorage and a scripted `fn`;
timeouts.py's pure functions against config values.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from crabllm_sync.config import RoutingConfig
from crabllm_sync.errors import (
    AllDeploymentsFailedError,
    InvalidRequestError,
    UpstreamError,
    UpstreamReadTimeoutError,
    UpstreamTimeoutError,
    to_openai,
)
from crabllm_sync.health import CLOSED
from crabllm_sync.routing import Registry, call_with_retries
from crabllm_sync.timeouts import (
    HEADER,
    deadline_seconds,
    effective_timeout,
    requested_timeout,
    with_timeout,
)
from tests.conftest import make_config
from tests.unit.test_routing import Clock, Script, dep, health_for

ROUTING = RoutingConfig(max_request_timeout=600, request_deadline=300)


def read_timeout() -> UpstreamReadTimeoutError:
    return UpstreamReadTimeoutError("a: timed out waiting for the answer", provider="a")


def test_read_timeout_error_is_a_billable_non_transient_504():
    err = read_timeout()
    assert err.billable and not err.is_transient
    assert err.http_status == 504
    assert to_openai(err)["error"]["code"] == "upstream_timeout"
    assert isinstance(err, UpstreamTimeoutError)
    # Everything else is not charged when it fails.
    assert not UpstreamTimeoutError("t").billable
    assert not UpstreamError("x", upstream_status=500).billable


def test_read_timeout_is_not_retried_nor_tried_on_another_deployment():
    fn = Script({"a": [read_timeout()], "b": ["ok"]})
    with pytest.raises(UpstreamReadTimeoutError):
        call_with_retries(
            [dep("a", max_retries=3), dep("b")],
            fn,
            rng=random.Random(0),
            sleep=lambda s: None,
            model="m",
        )
    assert fn.providers == ["a"]


def test_read_timeout_does_not_count_toward_the_breaker():
    clock = Clock()
    health = health_for(clock, threshold=1)
    fn = Script({"a": [read_timeout()]})
    for _ in range(3):
        with pytest.raises(UpstreamReadTimeoutError):
            call_with_retries(
                [dep("a")], fn, rng=random.Random(0), sleep=clock.sleep, health=health
            )
    assert health.state(dep("a")).state == CLOSED
    assert fn.providers == ["a", "a", "a"]


def test_connect_timeout_and_5xx_stay_retried():
    fn = Script({"a": [UpstreamTimeoutError("connect"), UpstreamError("x"), "ok"]})
    result, _ = call_with_retries(
        [dep("a", max_retries=2)], fn, rng=random.Random(0), sleep=lambda s: None
    )
    assert result == "ok" and fn.providers == ["a", "a", "a"]


def test_read_timeout_cut_by_the_deadline_is_a_billable_deadline_504():
    clock = Clock()
    health = health_for(clock, threshold=1)
    fn = Script({"a": [(0.5, read_timeout())]}, clock)
    with pytest.raises(AllDeploymentsFailedError) as info:
        call_with_retries(
            [dep("a", timeout=30)],
            fn,
            rng=random.Random(0),
            sleep=clock.sleep,
            health=health,
            deadline=1000.5,
            now=clock,
            model="m",
        )
    assert info.value.http_status == 504 and info.value.billable
    assert info.value.message.startswith("the request deadline passed")
    assert health.state(dep("a")).state == CLOSED


def test_long_provider_message_is_redacted_before_it_is_cut_or_logged(caplog):
    key = "sk-proj-" + "A1b2C3d4E5" * 15 + "xyz123"  # 164 characters
    assert len(key) == 164
    said = f"Incorrect API key provided: {key}. You can find your key at ..."
    fn = Script({"a": [UpstreamError(f"a: {said}", upstream_status=500)]})
    with caplog.at_level("WARNING"), pytest.raises(AllDeploymentsFailedError) as info:
        call_with_retries(
            [replace(dep("a", max_retries=1), api_key=key)],
            fn,
            rng=random.Random(0),
            sleep=lambda s: None,
            model="m",
        )
    assert "retrying m on a" in caplog.text
    for seen in (info.value.message, caplog.text):
        assert "[redacted]" in seen
        assert key[8:24] not in seen and key[-20:] not in seen


# -- the effective timeout ------------------------------------------------------


def test_no_header_means_the_deployments_own_timeout():
    assert requested_timeout({}, ROUTING) is None
    assert effective_timeout(dep("a", timeout=30), None) == (10.0, 30)
    assert effective_timeout(dep("a", timeout=4), None) == (4, 4)


def test_header_sets_the_read_timeout_of_every_attempt():
    seconds = requested_timeout({HEADER: " 450 "}, ROUTING)
    assert seconds == 450
    assert effective_timeout(dep("a", timeout=30), seconds) == (10.0, 450)
    deps = with_timeout([dep("a"), dep("b", timeout=5)], seconds)
    assert [d.timeout for d in deps] == [450, 450]


@pytest.mark.parametrize("value", ["601", "0", "-3", "ten", "nan", "inf", ""])
def test_header_over_the_maximum_or_not_a_number_is_a_400_naming_it(value):
    with pytest.raises(InvalidRequestError) as info:
        requested_timeout({HEADER: value}, ROUTING)
    assert info.value.http_status == 400
    assert info.value.param == HEADER and HEADER in info.value.message


def test_a_longer_requested_timeout_extends_the_deadline_never_shortens_it():
    assert deadline_seconds(ROUTING, None) == 300
    assert deadline_seconds(ROUTING, 500) == 500
    assert deadline_seconds(ROUTING, 5) == 300


def test_model_timeouts_override_the_provider_timeout_for_that_model():
    config = make_config(
        {
            "providers": {
                "p": {
                    "kind": "openai",
                    "base_url": "http://p",
                    "models": ["fast", "slow"],
                    "timeout": 30,
                    "model_timeouts": {"slow": 900},
                }
            }
        }
    )
    registry = Registry(config, {})
    assert registry.models["fast"][0].timeout == 30
    assert registry.models["slow"][0].timeout == 900


def test_model_timeouts_for_a_model_the_provider_lacks_is_a_config_error():
    from crabllm_sync.config import ConfigError

    with pytest.raises(ConfigError, match="model_timeouts"):
        make_config(
            {
                "providers": {
                    "p": {
                        "base_url": "http://p",
                        "models": ["fast"],
                        "model_timeouts": {"other": 900},
                    }
                }
            }
        )
