"""The format modules, pure: observers over fixed chunk and event sequences,
encoders to the exact bytes of each client format."""

from __future__ import annotations

import json

import pytest

from crabllm_sync import providers, sse
from crabllm_sync.auth import Principal
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import UpstreamError
from crabllm_sync.formats import chat, gemini, messages
from crabllm_sync.pipeline import Finish, PassThrough, relay
from tests.fakes import anthropic as fake_ant


def ctx() -> RequestContext:
    return RequestContext("r", "chat", Principal(name=None), 0.0, 0.0, provider="p")


def chunk(content: str | None = None, finish: str | None = None, **extra):
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    return {"id": "c", "choices": [choice], **extra}


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_stream_request_always_asks_for_usage_and_remembers_who_asked():
    body = {"model": "m", "stream_options": {"x": 1}}
    upstream, wants = chat.stream_request(body)
    assert upstream["stream_options"] == {"x": 1, "include_usage": True}
    assert wants is False
    assert chat.stream_request({"stream_options": {"include_usage": True}})[1]


def test_chat_observer_drops_the_usage_it_asked_for_but_keeps_it():
    c = ctx()
    obs = chat.ChatObserver(c, wants_usage=False)
    assert obs.feed(chunk("hi", usage=None)) == chunk("hi")
    assert obs.feed(chunk(finish="stop")) == chunk(finish="stop")
    assert obs.feed({"id": "c", "choices": [], "usage": USAGE}) is None
    assert c.usage == USAGE
    obs.end()  # every choice finished


def test_chat_observer_passes_usage_on_when_asked():
    obs = chat.ChatObserver(ctx(), wants_usage=True)
    last = {"id": "c", "choices": [], "usage": USAGE}
    assert obs.feed(last) is last


def test_chat_observer_calls_a_stream_without_finish_reason_a_failure():
    obs = chat.ChatObserver(ctx(), wants_usage=False)
    obs.feed(chunk("hi"))
    with pytest.raises(UpstreamError, match="ended before the model finished"):
        obs.end()


def native_events(text: str) -> list[sse.Event]:
    return [
        sse.Event(json.dumps(payload), name)
        for name, payload in fake_ant.events(fake_ant.text(text), "claude-x")
    ]


def test_native_observer_takes_usage_from_start_and_delta():
    c = ctx()
    obs = messages.NativeObserver(c)
    for event in native_events("a b c"):
        assert obs.feed(event) is event
    assert c.usage["prompt_tokens"] == 25 and c.usage["completion_tokens"] == 15
    obs.interrupted()  # message_delta came: its count stands
    assert c.usage["completion_tokens"] == 15


def test_native_observer_estimates_output_when_cut_before_message_delta():
    c = ctx()
    obs = messages.NativeObserver(c)
    events = native_events("x" * 40 + " " + "y" * 39)  # 80 characters
    for event in events[: [e.event for e in events].index("message_delta")]:
        obs.feed(event)
    assert c.usage["completion_tokens"] == 1  # what message_start said
    obs.interrupted()
    assert c.usage["completion_tokens"] == 20
    assert c.usage["prompt_tokens"] == 25


def test_native_observer_passes_an_error_event_on_redacted_as_the_failure():
    obs = messages.NativeObserver(ctx(), redact=lambda s: s.replace("sk-1", "***"))
    data = '{"type":"error","error":{"type":"overloaded_error","message":"sk-1"}}'
    out = obs.feed(sse.Event(data, "error"))
    assert "sk-1" not in out.data and out.event == "error"
    assert isinstance(obs.failure, UpstreamError)
    assert obs.failure.upstream_status == 529


def test_encoders_write_each_formats_bytes():
    assert chat.ChatEncoder().encode([{"a": 1}], last=True) == (
        b'data: {"a":1}\n\n' + sse.DONE
    )
    native = messages.NativeEncoder().encode([sse.Event("{}", "ping")], last=False)
    assert native == b"event: ping\ndata: {}\n\n"
    translated = messages.TranslatedEncoder("m").encode(
        [chunk("hi"), chunk(finish="stop")], last=True
    )
    names = [line for line in translated.split(b"\n") if line.startswith(b"event:")]
    assert names[0] == b"event: message_start" and names[-1] == b"event: message_stop"


class Hooks:
    name = "hooks"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_chunk(self, ctx, chunk) -> None:  # noqa: ANN001
        self.calls.append("chunk")

    def on_response(self, ctx, body, response) -> None:  # noqa: ANN001
        self.calls.append(f"response {ctx.status}")

    def on_error(self, ctx, error) -> None:  # noqa: ANN001
        self.calls.append(f"error {ctx.status}")


def run(items, rest, observer, hooks: Hooks, c: RequestContext | None = None):
    finish = Finish([hooks], redact=lambda s: s)
    return relay(c or ctx(), {}, items, iter(rest), observer, finish, [hooks])


def test_the_relay_finishes_once_on_success_failure_and_a_client_leaving():
    ok = Hooks()
    assert list(run([b"a"], [b"b"], PassThrough(), ok)) == [b"a", b"b"]
    assert ok.calls == ["response 200"]

    left = Hooks()
    gen = run([b"a"], [b"b"], PassThrough(), left)
    next(gen)
    gen.close()
    assert left.calls == ["response 499"]

    def broken():
        yield b"a"
        raise KeyError("a bug")

    failed = Hooks()
    gen = relay(ctx(), {}, [], broken(), PassThrough(), Finish([failed], str), [])
    with pytest.raises(Exception, match="internal server error") as info:
        list(gen)
    assert isinstance(info.value.__cause__, KeyError)
    assert failed.calls == ["error 500"]


def test_the_relay_hands_chat_chunks_to_the_hooks_and_ends_on_an_error_event():
    hooks = Hooks()
    obs = chat.ChatObserver(ctx(), wants_usage=False)
    list(run([chunk("a")], [chunk(finish="stop")], obs, hooks))
    assert hooks.calls == ["chunk", "chunk", "response 200"]

    hooks = Hooks()
    error = sse.Event('{"type":"error","error":{"type":"api_error"}}', "error")
    after = sse.Event("{}", "ping")
    out = list(run([error], [after], messages.NativeObserver(ctx()), hooks))
    assert out == [error]  # nothing after the error event
    assert hooks.calls == ["error 502"]


@pytest.mark.parametrize("kind", sorted(providers.ADAPTERS))
def test_every_adapter_has_the_declared_interface(kind):
    adapter = providers.adapter_for(kind)
    assert hasattr(adapter, "BASE_URL")
    assert callable(adapter.chat) and callable(adapter.chat_stream)
    assert providers.native_formats(kind) <= {
        messages.FORMAT,
        gemini.FORMAT,
        "responses",
    }


def test_native_formats_are_declared_by_the_adapters_that_take_them():
    native = {k: providers.native_formats(k) for k in providers.ADAPTERS}
    assert {k: v for k, v in native.items() if v} == {
        "anthropic": {messages.FORMAT},
        "google": {gemini.FORMAT},
        "openai": {"responses"},
        "azure": {"responses"},
    }
    # A custom OpenAI-compatible server may speak only chat completions.
    assert providers.native_formats("some-openai-compatible-kind") == frozenset()
