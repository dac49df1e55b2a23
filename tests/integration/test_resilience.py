"""Retries, fallback, cooldown, deadlines and honest streams against faulty upstreams.

In-process (Flask test transport or werkzeug threads) where that is enough;
through a real `gunicorn -k gevent` server for weights, keep-alives, client
disconnects, cooldown across workers and the kill-mid-run scenario.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from crabllm_sync.app import create_app
from tests.conftest import make_config, openai_provider, write_toml
from tests.extensions_support import FakeClock
from tests.fakes import openai as fake
from tests.upstream import Recorded, Reply, Upstream

ADMIN = "admin-token-for-tests"
USER = {"role": "user", "content": "hello there"}


@pytest.fixture
def ups() -> Iterator[Callable[[], Upstream]]:
    """Make as many OpenAI-compatible upstreams as a test needs."""
    made: list[Upstream] = []

    def make() -> Upstream:
        up = fake.make_upstream().start()
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()


def always(reply: Callable[[], Reply]) -> Callable[[Recorded], Reply]:
    return lambda rec: reply()


def status(code: int, **headers: str) -> Callable[[Recorded], Reply]:
    return always(
        lambda: Reply(
            status=code,
            json={"error": {"message": f"scripted {code}"}},
            headers=headers,
        )
    )


def app_for(providers: dict[str, Any], routing: dict[str, Any] | None = None, **top):
    config = make_config(
        {"providers": providers, "routing": routing or {}, "admin_token": ADMIN, **top}
    )
    app = create_app(config)
    app.testing = True
    return app


def client_for(app: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://gw")


def chat(client: httpx.Client, **over: Any) -> httpx.Response:
    return client.post(
        "/v1/chat/completions", json={"model": "m", "messages": [USER], **over}
    )


def stream_events(pieces: int = 3, *, model: str = "m") -> list[Any]:
    return fake.stream_events(model, [f"w{i}" for i in range(pieces)])


class SSE:
    """What a client saw on one streamed request: status, data events, comments."""

    def __init__(self) -> None:
        self.status = 0
        self.data: list[str] = []
        self.comments = 0
        self.order: list[str] = []  # "data" / "comment", as they arrived

    @property
    def last(self) -> str:
        return self.data[-1] if self.data else ""

    @property
    def ended_with_done(self) -> bool:
        return self.last == "[DONE]"

    @property
    def error(self) -> dict[str, Any] | None:
        if self.last.startswith("{") and "error" in json.loads(self.last):
            return json.loads(self.last)["error"]
        return None

    @property
    def content_chunks(self) -> int:
        return sum(1 for d in self.data if d.startswith("{") and '"choices"' in d)


def read_sse(
    base: str,
    *,
    model: str = "m",
    stop_after: int | None = None,
    timeout: float = 30,
    client: httpx.Client | None = None,
) -> SSE:
    """POST a streamed chat; with `stop_after`, hang up after that many data events."""
    seen = SSE()
    body = {"model": model, "messages": [USER], "stream": True}
    with (client or httpx).stream(
        "POST", f"{base}/v1/chat/completions", json=body, timeout=timeout
    ) as resp:
        seen.status = resp.status_code
        if resp.status_code != 200:
            resp.read()
            seen.data.append(resp.text)
            return seen
        for line in resp.iter_lines():
            if line.startswith(":"):
                seen.comments += 1
                seen.order.append("comment")
            elif line.startswith("data: "):
                seen.data.append(line[len("data: ") :])
                seen.order.append("data")
                if stop_after is not None and len(seen.data) >= stop_after:
                    break
    return seen


# -- retries and fallback -------------------------------------------------------


def test_transient_failures_are_retried_exactly_then_succeed(ups):
    a = ups()
    a.enqueue(Reply(status=500, json={}), Reply(status=503, json={}))
    client = client_for(app_for({"a": openai_provider(a, ["m"], max_retries=2)}))
    resp = chat(client)
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "echo: hello there"
    assert len(a.requests) == 3


def test_spent_retries_fall_back_by_descending_weight(ups):
    heavy, mid, light = ups(), ups(), ups()
    for up in (heavy, mid, light):
        up.route(fake.CHAT_PATH, status(500))
    names = {heavy.port: "heavy", mid.port: "mid", light.port: "light"}
    client = client_for(
        app_for(
            {
                "light": openai_provider(light, ["m"], weight=1, max_retries=1),
                "heavy": openai_provider(heavy, ["m"], weight=5, max_retries=1),
                "mid": openai_provider(mid, ["m"], weight=3, max_retries=1),
            },
            {"cooldown_seconds": 0},  # the breaker off: every request tries all
        )
    )
    requests_made = 12
    for _ in range(requests_made):
        resp = chat(client)
        assert resp.status_code == 502
        message = resp.json()["error"]["message"]
        assert "sk-upstream" not in message
        for name in ("heavy", "mid", "light"):
            assert f"{name} (2 attempts, last: HTTP 500: " in message
    calls = sorted(
        (r.received_at, names[port])
        for up, port in ((heavy, heavy.port), (mid, mid.port), (light, light.port))
        for r in up.requests
    )
    order = [name for _, name in calls]
    assert len(order) == requests_made * 6  # 3 deployments x (1 + max_retries)
    for i in range(0, len(order), 6):
        one = order[i : i + 6]
        first, second, third = one[0], one[2], one[4]
        assert one == [first, first, second, second, third, third]
        rest = [n for n in ("heavy", "mid", "light") if n != first]
        assert [second, third] == rest


def test_non_transient_4xx_is_passed_on_without_retry_or_fallback(ups):
    a, b = ups(), ups()
    a.route(fake.CHAT_PATH, status(400))
    client = client_for(
        app_for(
            {
                "a": openai_provider(a, ["m"], max_retries=3, weight=1),
                "b": openai_provider(b, ["m"], weight=0),
            }
        )
    )
    resp = chat(client)
    assert resp.status_code == 400
    assert "scripted 400" in resp.json()["error"]["message"]
    assert (len(a.requests), len(b.requests)) == (1, 0)


def test_short_retry_after_is_waited_before_the_retry(ups):
    a = ups()
    a.enqueue(Reply(status=429, json={}, headers={"Retry-After": "1"}))
    client = client_for(app_for({"a": openai_provider(a, ["m"], max_retries=1)}))
    assert chat(client).status_code == 200
    first, second = a.requests
    assert second.received_at - first.received_at >= 0.95


def test_long_retry_after_moves_to_the_next_deployment_at_once(ups):
    a, b = ups(), ups()
    a.route(fake.CHAT_PATH, status(429, **{"Retry-After": "120"}))
    client = client_for(
        app_for(
            {
                "a": openai_provider(a, ["m"], max_retries=3, weight=1),
                "b": openai_provider(b, ["m"], weight=0),
            }
        )
    )
    assert chat(client).status_code == 200
    assert (len(a.requests), len(b.requests)) == (1, 1)


def test_all_rate_limited_is_503_with_retry_after(ups):
    a, b = ups(), ups()
    a.route(fake.CHAT_PATH, status(429, **{"Retry-After": "3"}))
    b.route(fake.CHAT_PATH, status(429, **{"Retry-After": "2"}))
    client = client_for(
        app_for({"a": openai_provider(a, ["m"]), "b": openai_provider(b, ["m"])})
    )
    resp = chat(client)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "2"
    err = resp.json()["error"]
    assert err["code"] == "upstream_error"
    assert "a (HTTP 429: scripted 429)" in err["message"]
    assert "b (HTTP 429: scripted 429)" in err["message"]


def test_request_deadline_cuts_a_hanging_upstream_and_answers_504(ups):
    a = ups()
    hang = threading.Event()
    a.route(fake.CHAT_PATH, always(lambda: Reply(json={}, hang=hang)))
    client = client_for(
        app_for(
            {"a": openai_provider(a, ["m"], timeout=30, max_retries=5)},
            {"request_deadline": 1},
        )
    )
    started = time.monotonic()
    try:
        resp = chat(client)
    finally:
        hang.set()
    # Without the deadline this would wait 30 s per attempt.
    assert time.monotonic() - started < 15
    assert resp.status_code == 504
    assert resp.json()["error"]["message"].startswith(
        "the request deadline passed before 'm' answered"
    )
    assert len(a.requests) == 1


# -- cooldown -------------------------------------------------------------------


def test_a_cooling_single_deployment_fails_fast_with_503(ups):
    a = ups()
    a.route(fake.CHAT_PATH, status(500))
    client = client_for(
        app_for(
            {"a": openai_provider(a, ["m"], max_retries=1)},
            {"failure_threshold": 2, "cooldown_seconds": 60},
        )
    )
    assert chat(client).status_code == 502
    assert len(a.requests) == 2
    for _ in range(5):
        resp = chat(client)
        assert resp.status_code == 503
        assert 55 <= int(resp.headers["Retry-After"]) <= 60
        assert "a (cooling down, retry in" in resp.json()["error"]["message"]
    assert len(a.requests) == 2


def health_detail(client: httpx.Client) -> dict[tuple[str, str], dict[str, Any]]:
    resp = client.get("/health?detail=1", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200
    return {(d["provider"], d["model"]): d for d in resp.json()["deployments"]}


def wait_for_state(client: httpx.Client, key: tuple[str, str], state: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if health_detail(client)[key]["state"] == state:
            return
        time.sleep(0.05)
    pytest.fail(f"{key} never became {state}")


def on_clock(app: Any, clock: FakeClock) -> Any:
    """The app's breakers on `clock` (cooling is measured in wall time)."""
    app.extensions["crabllm"].health.clock = clock
    return app


def test_half_open_lets_exactly_one_probe_through(ups, served):
    a = ups()
    a.enqueue(Reply(status=500, json={}))
    clock = FakeClock(time.time())
    base = served(
        on_clock(
            app_for(
                {"a": openai_provider(a, ["m"], max_retries=0)},
                {"failure_threshold": 1, "cooldown_seconds": 3},
            ),
            clock,
        )
    )
    body = {"model": "m", "messages": [USER]}
    url = "/v1/chat/completions"
    client = httpx.Client(base_url=base, timeout=20)
    assert client.post(url, json=body).status_code == 502
    assert health_detail(client)[("a", "m")]["state"] == "open"
    assert client.post(url, json=body).status_code == 503
    clock.advance(2.9)
    assert health_detail(client)[("a", "m")]["state"] == "open"
    clock.advance(0.2)
    assert health_detail(client)[("a", "m")]["state"] == "half-open"

    hang = threading.Event()
    a.enqueue(Reply(json=fake.completion("m", "probe"), hang=hang))
    probe: dict[str, httpx.Response] = {}
    t = threading.Thread(
        target=lambda: probe.setdefault(
            "r", httpx.post(base + url, json=body, timeout=20)
        )
    )
    t.start()
    a.wait_for_requests(2)  # the probe is at the upstream now
    others = [client.post(url, json=body) for _ in range(3)]
    assert [r.status_code for r in others] == [503, 503, 503]
    assert len(a.requests) == 2  # nobody but the probe reached the upstream
    hang.set()
    t.join(20)
    assert probe["r"].status_code == 200
    assert health_detail(client)[("a", "m")]["state"] == "closed"
    assert client.post(url, json=body).status_code == 200
    assert len(a.requests) == 3


def test_a_failed_probe_opens_the_breaker_again(ups, served):
    a = ups()
    a.route(fake.CHAT_PATH, status(502))
    clock = FakeClock(time.time())
    base = served(
        on_clock(
            app_for(
                {"a": openai_provider(a, ["m"], max_retries=3)},
                {"failure_threshold": 1, "cooldown_seconds": 3},
            ),
            clock,
        )
    )
    client = httpx.Client(base_url=base, timeout=20)
    url = "/v1/chat/completions"
    body = {"model": "m", "messages": [USER]}
    assert client.post(url, json=body).status_code == 502
    clock.advance(3.1)
    assert health_detail(client)[("a", "m")]["state"] == "half-open"
    assert client.post(url, json=body).status_code == 502  # the probe: one attempt
    assert len(a.requests) == 2
    assert health_detail(client)[("a", "m")]["state"] == "open"


def test_health_detail_needs_the_admin_token_and_plain_health_tells_nothing(
    ups, app_factory
):
    a = ups()
    client = client_for(app_for({"secret-provider": openai_provider(a, ["m"])}))
    plain = client.get("/health")
    assert plain.status_code == 200 and plain.json() == {"status": "ok"}
    assert client.get("/health?detail=1").status_code == 401
    wrong = client.get("/health?detail=1", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert health_detail(client)[("secret-provider", "m")] == {
        "provider": "secret-provider",
        "model": "m",
        "state": "closed",
        "consecutive_failures": 0,
        "cooling_until": None,
    }
    no_admin = client_for(
        app_factory(make_config({"providers": {"a": openai_provider(a, ["m"])}}))
    )
    assert no_admin.get("/health?detail=1").status_code == 403


class BrokenStorage:
    """Storage that is down: every call raises."""

    def _fail(self, *a: Any, **kw: Any) -> Any:
        raise ConnectionError("storage is down")

    get = set = incr = list_prefix = delete = _fail

    def close(self) -> None:
        pass


def test_storage_failure_does_not_fail_requests(ups, app_factory):
    a = ups()
    config = make_config({"providers": {"a": openai_provider(a, ["m"])}})
    client = client_for(app_factory(config, storage=BrokenStorage()))
    assert chat(client).status_code == 200


# -- streams (werkzeug threads) ----------------------------------------------------


def test_stream_failure_before_the_first_byte_falls_back(ups, served):
    a, b = ups(), ups()
    a.enqueue(
        Reply(status=500, json={}),
        Reply(events=stream_events(), drop_after=0),  # dies before any event
    )
    base = served(
        app_for(
            {
                "a": openai_provider(a, ["m"], weight=1, max_retries=1),
                "b": openai_provider(b, ["m"], weight=0),
            }
        )
    )
    client = openai.OpenAI(api_key="x", base_url=f"{base}/v1", max_retries=0)
    chunks = list(
        client.chat.completions.create(model="m", messages=[USER], stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo:hellothere"
    assert (len(a.requests), len(b.requests)) == (2, 1)


def test_mid_stream_drop_ends_with_one_error_event(ups, served):
    a, b = ups(), ups()
    a.enqueue(Reply(events=stream_events(5), drop_after=3))
    base = served(
        app_for(
            {
                "a": openai_provider(a, ["m"], weight=1, max_retries=2),
                "b": openai_provider(b, ["m"], weight=0),
            }
        )
    )
    seen = read_sse(base)
    assert seen.status == 200
    assert seen.content_chunks == 3  # what arrived before the drop, then...
    assert seen.error is not None and seen.error["code"] == "upstream_error"
    assert "[DONE]" not in seen.data
    assert (len(a.requests), len(b.requests)) == (1, 0)  # no retry after a byte

    a.enqueue(Reply(events=stream_events(5), drop_after=3))
    client = openai.OpenAI(api_key="x", base_url=f"{base}/v1", max_retries=0)
    got = []
    with pytest.raises(openai.APIError):
        for c in client.chat.completions.create(
            model="m", messages=[USER], stream=True
        ):
            got.append(c)
    assert len(got) == 3


def test_stream_that_ends_before_finish_reason_is_an_error(ups, served):
    a = ups()
    events = stream_events(3)
    truncated = events[:3]  # role, w0, w1: no finish chunk, no [DONE], clean end
    a.enqueue(Reply(events=truncated))
    base = served(app_for({"a": openai_provider(a, ["m"])}))
    seen = read_sse(base)
    assert seen.content_chunks == 3
    assert seen.error is not None
    assert "ended before the model finished" in seen.error["message"]


def test_stream_with_finish_reason_but_no_done_still_ends_with_done(ups, served):
    a = ups()
    a.enqueue(Reply(events=[e for e in stream_events(2) if e != "[DONE]"]))
    base = served(app_for({"a": openai_provider(a, ["m"])}))
    seen = read_sse(base)
    assert seen.ended_with_done and seen.error is None


def test_malformed_event_mid_stream_is_an_error_event(ups, served):
    a = ups()
    events = stream_events(3)
    a.enqueue(Reply(events=[*events[:2], b"data: {not json\n\n", *events[2:]]))
    base = served(app_for({"a": openai_provider(a, ["m"])}))
    seen = read_sse(base)
    assert seen.content_chunks == 2
    assert seen.error is not None and "malformed" in seen.error["message"]


def test_provider_error_event_mid_stream_is_passed_on_as_the_final_event(ups, served):
    a = ups()
    events = stream_events(3)
    oops = {"error": {"message": "the model crashed", "type": "server_error"}}
    a.enqueue(Reply(events=[*events[:2], oops, *events[2:]]))
    base = served(app_for({"a": openai_provider(a, ["m"])}))
    seen = read_sse(base)
    assert seen.content_chunks == 2
    assert seen.error is not None and "the model crashed" in seen.error["message"]
    assert "[DONE]" not in seen.data


def test_a_cooling_model_fails_a_stream_before_any_event(ups, served):
    a = ups()
    a.route(fake.CHAT_PATH, status(500))
    base = served(
        app_for(
            {"a": openai_provider(a, ["m"])},
            {"failure_threshold": 1, "cooldown_seconds": 60},
        )
    )
    assert read_sse(base).status == 502
    seen = read_sse(base)
    assert seen.status == 503  # a plain JSON error, not an event stream
    assert json.loads(seen.data[0])["error"]["code"] == "upstream_error"
    assert len(a.requests) == 1


def test_provider_auth_failure_is_not_retried_and_is_not_the_clients_401(ups):
    a, b = ups(), ups()
    a.route(fake.CHAT_PATH, status(401))
    client = client_for(
        app_for(
            {
                "a": openai_provider(a, ["m"], max_retries=3, weight=1),
                "b": openai_provider(b, ["m"], weight=0),
            }
        )
    )
    resp = chat(client)
    assert resp.status_code == 502
    assert "authentication with the provider failed" in resp.json()["error"]["message"]
    assert (len(a.requests), len(b.requests)) == (1, 0)


def test_mid_stream_read_timeout_is_an_error_event_after_keepalives(ups, served):
    a = ups()
    a.enqueue(Reply(events=stream_events(3), pauses={2: 5.0}))
    base = served(
        app_for(
            {"a": openai_provider(a, ["m"], timeout=1.0)}, {"keepalive_seconds": 0.2}
        )
    )
    seen = read_sse(base)
    assert seen.content_chunks == 2
    assert seen.comments >= 2
    assert seen.error is not None and seen.error["code"] == "upstream_timeout"


def test_keepalives_arrive_during_an_upstream_pause(ups, served):
    a = ups()
    a.enqueue(Reply(events=stream_events(3), pauses={2: 1.2}))
    base = served(app_for({"a": openai_provider(a, ["m"])}, {"keepalive_seconds": 0.2}))
    seen = read_sse(base)
    assert seen.ended_with_done
    # All comments sit in the pause, between the 2nd and 3rd data events.
    first_comment = seen.order.index("comment")
    assert seen.order[:first_comment] == ["data", "data"]
    assert seen.comments >= 3
    assert set(seen.order[first_comment : first_comment + seen.comments]) == {"comment"}


def test_disconnect_mid_stream_closes_the_upstream_in_threads(ups, served):
    a = ups()
    a.enqueue(Reply(events=stream_events(2000), chunk_delay=0.01))
    base = served(app_for({"a": openai_provider(a, ["m"])}, {"keepalive_seconds": 0.2}))
    seen = read_sse(base, stop_after=5)
    assert seen.content_chunks == 5
    # 2000 pieces at 10 ms would hold the upstream for 20 s without the abort.
    assert a.streams_closed.wait(10)
    assert a.streams_open == 0


def test_disconnect_during_a_pause_closes_the_upstream_in_threads(ups, served):
    a = ups()
    a.enqueue(Reply(events=stream_events(3), pauses={2: 60.0}))
    before = threading.active_count()
    base = served(
        app_for(
            # Without the abort, the reader would sit out the 60 s read timeout.
            {"a": openai_provider(a, ["m"], timeout=60)},
            {"keepalive_seconds": 0.1},
        )
    )
    seen = read_sse(base, stop_after=2)
    assert seen.content_chunks == 2
    assert a.streams_closed.wait(10)
    # No reader thread is left behind (served's server thread is the only new one).
    deadline = time.monotonic() + 10
    while threading.active_count() > before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before + 1


# -- through gunicorn's gevent worker ---------------------------------------------


def toml_provider(name: str, up: Upstream, **fields: Any) -> str:
    lines = [
        f"[providers.{name}]",
        'kind = "openai"',
        f'base_url = "{up.url}/v1"',
        'api_key = "sk-upstream"',
        'models = ["m"]',
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def gateway_config(tmp_path: Path, *sections: str, routing: str = "") -> Path:
    text = f'admin_token = "{ADMIN}"\n\n[routing]\n{routing}\n\n' + "\n".join(sections)
    return write_toml(tmp_path / "crabllm.toml", text)


def in_parallel(
    n_threads: int, total: int, fn: Callable[[httpx.Client, int], Any]
) -> list[Any]:
    """Run fn(client, i) for i in range(total) over n_threads (a client each:
    making an httpx client costs more than a request); results in order."""
    results: list[Any] = [None] * total
    counter = iter(range(total))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        with httpx.Client() as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    results[i] = fn(client, i)
                except BaseException as exc:  # re-raised in the test thread
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def test_weights_hold_within_statistical_bounds_under_gunicorn(ups, tmp_path, gunicorn):
    heavy, light = ups(), ups()
    path = gateway_config(
        tmp_path,
        toml_provider("heavy", heavy, weight=3, max_retries=0),
        toml_provider("light", light, weight=1, max_retries=0),
    )
    srv = gunicorn(path, workers=2)
    total = 400

    def one(client: httpx.Client, i: int) -> int:
        return client.post(
            f"{srv.url}/v1/chat/completions",
            json={"model": "m", "messages": [USER]},
            timeout=30,
        ).status_code

    assert set(in_parallel(4, total, one)) == {200}
    h, lt = len(heavy.requests), len(light.requests)
    assert h + lt == total
    expected_h, expected_l = total * 3 / 4, total / 4
    chi2 = (h - expected_h) ** 2 / expected_h + (lt - expected_l) ** 2 / expected_l
    # 1 degree of freedom: P(chi2 > 15.1) = 0.0001 when the weights hold.
    assert chi2 < 15.1, (h, lt)


def test_streams_under_gunicorn_keepalives_drops_and_disconnects(
    ups, tmp_path, gunicorn
):
    a = ups()
    path = gateway_config(
        tmp_path,
        # A long read timeout: only the abort can release a paused upstream soon.
        toml_provider("a", a, max_retries=0, timeout=60),
        routing="keepalive_seconds = 0.2",
    )
    srv = gunicorn(path, workers=2)

    # Keep-alive comments during a pause, then the rest and [DONE].
    a.enqueue(Reply(events=stream_events(3), pauses={2: 1.2}))
    seen = read_sse(srv.url)
    assert seen.ended_with_done
    assert seen.comments >= 3
    assert seen.order[:2] == ["data", "data"]

    # A drop after the first byte: one final error event, no [DONE].
    a.enqueue(Reply(events=stream_events(5), drop_after=3))
    seen = read_sse(srv.url)
    assert seen.content_chunks == 3 and seen.error is not None
    assert "[DONE]" not in seen.data

    # The client hangs up mid-stream: the upstream is released at once.
    a.enqueue(Reply(events=stream_events(2000), chunk_delay=0.01))
    seen = read_sse(srv.url, stop_after=5)
    assert seen.content_chunks == 5
    assert a.streams_closed.wait(10)

    # ... and during a long pause (only the keep-alive write notices it).
    a.enqueue(Reply(events=stream_events(3), pauses={2: 60.0}))
    seen = read_sse(srv.url, stop_after=2)
    assert seen.content_chunks == 2
    assert a.streams_closed.wait(10)
    assert a.streams_open == 0


ACCESS_LOG = '--access-logfile - --access-logformat "seq=%({x-seq}i)s pid=%(p)s"'


def _served_by(log: str) -> dict[int, str]:
    return {int(s): pid for s, pid in re.findall(r"seq=(\d+) pid=(\S+)", log)}


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_cooldown_is_shared_across_workers(kind, ups, tmp_path, gunicorn):
    """With a shared store, the breaker one worker opens holds in the other.

    The memory store is the control: each worker then pays for its own
    failures, which shows the test can tell the two apart.
    """
    dead = ups()
    dead.route(fake.CHAT_PATH, status(500))
    threshold = 2
    path = gateway_config(
        tmp_path,
        toml_provider("dead", dead, max_retries=0),
        f'[storage]\nkind = "{kind}"\npath = "{tmp_path / "state.db"}"\n',
        routing=f"failure_threshold = {threshold}\ncooldown_seconds = 600",
    )
    srv = gunicorn(path, workers=2, env={"GUNICORN_CMD_ARGS": ACCESS_LOG})
    statuses: list[int] = []
    # A new connection per request, so either worker may take it.
    client = httpx.Client(headers={"Connection": "close"}, timeout=30)
    for seq in range(300):
        resp = client.post(
            f"{srv.url}/v1/chat/completions",
            json={"model": "m", "messages": [USER]},
            headers={"x-seq": str(seq)},
        )
        statuses.append(resp.status_code)
        deadline = time.monotonic() + 10
        while seq not in _served_by(srv.log()) and time.monotonic() < deadline:
            time.sleep(0.02)
        per_worker = Counter(_served_by(srv.log()).values())
        if len(per_worker) == 2 and min(per_worker.values()) >= threshold:
            break
    else:
        pytest.fail("one worker answered every request; cannot compare workers")
    if kind == "memory":
        assert len(dead.requests) == 2 * threshold
    else:
        assert len(dead.requests) == threshold
        assert statuses[:threshold] == [502] * threshold
        assert set(statuses[threshold:]) == {503}


def test_one_probe_for_all_workers_after_cooling(ups, tmp_path, gunicorn):
    """Half-open across workers: the probe is elected in the shared store."""
    up = ups()
    up.enqueue(Reply(status=500, json={}))
    path = gateway_config(
        tmp_path,
        toml_provider("a", up, max_retries=0, timeout=30),
        f'[storage]\nkind = "sqlite"\npath = "{tmp_path / "state.db"}"\n',
        routing="failure_threshold = 1\ncooldown_seconds = 1",
    )
    srv = gunicorn(path, workers=2, env={"GUNICORN_CMD_ARGS": ACCESS_LOG})
    client = httpx.Client(headers={"Connection": "close"}, timeout=30)
    url = f"{srv.url}/v1/chat/completions"
    body = {"model": "m", "messages": [USER]}
    assert client.post(url, json=body).status_code == 502
    with httpx.Client(base_url=srv.url, timeout=30) as detail:
        wait_for_state(detail, ("a", "m"), "half-open")

    hang = threading.Event()
    up.enqueue(Reply(json=fake.completion("m", "probe"), hang=hang))
    probe: dict[str, httpx.Response] = {}
    t = threading.Thread(
        target=lambda: probe.setdefault("r", client.post(url, json=body))
    )
    t.start()
    up.wait_for_requests(2)
    try:
        for seq in range(200):
            resp = client.post(url, json=body, headers={"x-seq": str(seq)})
            assert resp.status_code == 503
            deadline = time.monotonic() + 10
            while seq not in _served_by(srv.log()) and time.monotonic() < deadline:
                time.sleep(0.02)
            if len(set(_served_by(srv.log()).values())) == 2:
                break
        else:
            pytest.fail("one worker answered every request; cannot compare workers")
        assert len(up.requests) == 2  # the failure and the one probe
    finally:
        hang.set()
        t.join(30)
    assert probe["r"].status_code == 200
    assert client.post(url, json=body).status_code == 200


def test_killing_a_deployment_mid_run_loses_no_request(ups, tmp_path, gunicorn):
    """Done when: two deployments, the first killed mid-run. No request that
    had not started streaming is lost; every started one ends with [DONE] or
    an error event."""
    first, second = ups(), ups()
    for up in (first, second):
        up.route(
            fake.CHAT_PATH,
            always(
                lambda: Reply(events=stream_events(8), delay=0.02, chunk_delay=0.02)
            ),
        )
    # One stream on the first deployment is surely mid-flight at the kill.
    first.enqueue(Reply(events=stream_events(8), pauses={3: 60.0}))
    path = gateway_config(
        tmp_path,
        toml_provider("first", first, weight=1, max_retries=2, timeout=10),
        toml_provider("second", second, weight=1, max_retries=2, timeout=10),
        routing="keepalive_seconds = 1",
    )
    srv = gunicorn(path, workers=2)
    total = 120

    def killer() -> None:
        first.wait_until(lambda u: len(u.requests) >= 25, timeout=60)
        first.kill()

    k = threading.Thread(target=killer)
    k.start()
    results = in_parallel(
        6, total, lambda client, i: read_sse(srv.url, timeout=60, client=client)
    )
    k.join(60)

    assert [r.status for r in results] == [200] * total  # nothing lost
    errors = [r for r in results if not r.ended_with_done]
    for r in errors:
        assert r.error is not None, r.data[-3:]  # an error event, not a cut
        assert r.content_chunks >= 1  # it had started streaming
    assert len(errors) >= 1  # the paused stream was cut by the kill
    assert len(second.requests) > 0
    assert len(first.requests) >= 25
