"""Deployment health (Gateway.health.snapshot()) on /metrics as Prometheus gauges,
read with prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_config, openai_provider
from tests.fakes import openai as fake
from tests.upstream import Reply, Upstream

USER = [{"role": "user", "content": "hi"}]
METRICS_TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture
def ups() -> Iterator[tuple[Upstream, Upstream]]:
    bad = fake.make_upstream().start()
    good = fake.make_upstream().start()
    bad.route(
        r"/chat/completions$",
        lambda rec: Reply(status=500, json={"error": {"message": "down"}}),
    )
    yield bad, good
    bad.stop()
    good.stop()


def scrape(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, for the deployment gauges."""
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert resp.status_code == 200
    out: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            if s.name.startswith("crabllm_deployment_"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def state(samples, provider: str, model: str = "m") -> str:
    """The one state whose gauge is 1 (and check every other state is 0)."""
    values = {
        labels[2][1]: v
        for (name, labels), v in samples.items()
        if name == "crabllm_deployment_state"
        and labels[:2] == (("model", model), ("provider", provider))
    }
    assert set(values) == {"closed", "open", "half-open", "unknown"}
    assert sorted(values.values()) == [0, 0, 0, 1]
    return next(k for k, v in values.items() if v == 1)


def failures(samples, provider: str, model: str = "m") -> float:
    key = (
        "crabllm_deployment_consecutive_failures",
        (("model", model), ("provider", provider)),
    )
    return samples[key]


def test_breaker_state_and_failures_are_gauges_on_metrics(ups, app_factory):
    bad, good = ups
    config = make_config(
        {
            "providers": {
                # Weight 0 is never picked first: "bad" is always tried first.
                "bad": openai_provider(bad, ["m"], max_retries=1, weight=1),
                "good": openai_provider(good, ["m", "other"], weight=0),
            },
            "routing": {"failure_threshold": 3, "cooldown_seconds": 300},
            "metrics_token": METRICS_TOKEN,
        }
    )
    app = app_factory(config)
    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://gw")

    before = scrape(client)
    assert state(before, "bad") == state(before, "good") == "closed"
    assert state(before, "good", "other") == "closed"
    assert failures(before, "bad") == failures(before, "good") == 0

    # Two failed attempts on "bad" (1 + 1 retry), then "good" answers.
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": USER})
    assert r.status_code == 200
    after_one = scrape(client)
    assert state(after_one, "bad") == "closed"
    assert failures(after_one, "bad") == 2
    assert failures(after_one, "good") == 0

    # The third consecutive failure opens the breaker.
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": USER})
    assert r.status_code == 200
    after_two = scrape(client)
    assert state(after_two, "bad") == "open"
    assert failures(after_two, "bad") == 3
    assert state(after_two, "good") == "closed"
    assert len(bad.requests) == 3 and len(good.requests) == 2
