"""Chat, streams, embeddings, models via the openai SDK, OpenAI-compatible kinds."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from tests.conftest import make_config, openai_provider, sdk_for_app
from tests.fakes import openai as fake
from tests.upstream import Reply, sse_bytes


def _config(up, **over):
    data = {
        "providers": {
            "up": openai_provider(up, ["gpt-4o", "text-embedding-3-small"]),
            "local": {"kind": "mock", "models": ["mock"]},
        },
        "aliases": {"gpt4": "gpt-4o"},
    }
    data.update(over)
    return make_config(data)


def test_chat_passes_through_and_reports_usage(upstream, app_factory):
    client = sdk_for_app(app_factory(_config(upstream)))
    out = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
    )
    assert out.choices[0].message.content == "echo: hello"
    assert out.usage.prompt_tokens == 7 and out.usage.completion_tokens == 3
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-upstream"


def test_unknown_fields_reach_the_upstream_untouched(upstream, app_factory):
    client = sdk_for_app(app_factory(_config(upstream)))
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"brand_new_param": {"x": [1, 2]}, "reasoning_effort": "low"},
    )
    body = upstream.requests[-1].json
    assert body["brand_new_param"] == {"x": [1, 2]}
    assert body["reasoning_effort"] == "low"


def test_alias_resolves_to_canonical_model(upstream, app_factory):
    client = sdk_for_app(app_factory(_config(upstream)))
    client.chat.completions.create(
        model="gpt4", messages=[{"role": "user", "content": "x"}]
    )
    assert upstream.requests[-1].json["model"] == "gpt-4o"


def test_stream_relays_chunks_and_done(upstream, app_factory, served):
    url = served(app_factory(_config(upstream)))
    client = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo:onetwothree"
    assert all(c.usage is None for c in chunks), (
        "usage chunk leaked to a client that did not ask"
    )
    # The gateway asked upstream for usage so the stream can be counted.
    assert upstream.requests[-1].json["stream_options"] == {"include_usage": True}


def test_stream_include_usage_is_honoured(upstream, app_factory, served):
    url = served(app_factory(_config(upstream)))
    client = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "a b"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3  # "echo:", "a", "b"


def test_first_chunk_arrives_before_upstream_finishes(upstream, app_factory, served):
    gate = threading.Event()
    events = fake.stream_events("gpt-4o", ["first", "x", "y"])

    def pieces():
        yield sse_bytes(events[0])
        yield sse_bytes(events[1])
        gate.wait(10)  # hold the rest until the client has seen "first"
        for e in events[2:]:
            yield sse_bytes(e)

    upstream.enqueue(Reply(chunks=pieces()))
    url = served(app_factory(_config(upstream)))
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={
            "model": "gpt-4o",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        timeout=10,
    ) as resp:
        lines = resp.iter_lines()
        seen = []
        for line in lines:
            if line.startswith("data:"):
                seen.append(line)
            if len(seen) == 2:
                break
        assert '"first"' in seen[1]
        assert not gate.is_set()
        gate.set()
        rest = [ln for ln in lines if ln.startswith("data:")]
    assert rest[-1] == "data: [DONE]"


def test_embeddings(upstream, app_factory):
    client = sdk_for_app(app_factory(_config(upstream)))
    out = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [d.index for d in out.data] == [0, 1]
    assert out.usage.prompt_tokens == 8
    assert upstream.requests[-1].path == "/v1/embeddings"


def test_models_lists_models_and_aliases(upstream, app_factory):
    client = sdk_for_app(app_factory(_config(upstream)))
    ids = {m.id for m in client.models.list()}
    assert ids == {"gpt-4o", "text-embedding-3-small", "gpt4", "mock"}


def test_unknown_model_is_404_model_not_found(upstream, app_factory):
    client = sdk_for_app(app_factory(_config(upstream)))
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.body["code"] == "model_not_found"
    assert upstream.requests == []


def test_upstream_4xx_is_passed_on_with_its_message(upstream, app_factory):
    upstream.enqueue(
        Reply(
            status=400,
            json={
                "error": {
                    "message": "Invalid value for 'temperature'",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": None,
                }
            },
        )
    )
    client = sdk_for_app(app_factory(_config(upstream)))
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert "Invalid value for 'temperature'" in exc.value.body["message"]


def test_mock_provider_chats_streams_and_embeds(upstream, app_factory, served):
    url = served(app_factory(_config(upstream)))
    client = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)
    out = client.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "ping"}]
    )
    assert out.choices[0].message.content == "Mock reply: ping"
    assert out.usage.completion_tokens == 3
    chunks = list(
        client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "ping"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Mock reply: ping"
    )
    assert chunks[-1].usage.total_tokens == out.usage.total_tokens
    emb = client.embeddings.create(model="mock", input="hello")
    assert len(emb.data[0].embedding) == 16
    again = client.embeddings.create(model="mock", input="hello")
    assert again.data[0].embedding == emb.data[0].embedding


def test_azure_kind_uses_deployment_url_and_api_key(upstream, app_factory):
    upstream.route(r"/openai/deployments/[^/]+/chat/completions$", fake.chat_handler)
    config = make_config(
        {
            "providers": {
                "az": {
                    "kind": "azure",
                    "base_url": upstream.url,
                    "api_key": "az-key",
                    "api_version": "2024-06-01",
                    "models": ["my-gpt"],
                    "max_retries": 0,
                }
            }
        }
    )
    client = sdk_for_app(app_factory(config))
    out = client.chat.completions.create(
        model="my-gpt", messages=[{"role": "user", "content": "hey"}]
    )
    assert out.choices[0].message.content == "echo: hey"
    sent = upstream.requests[-1]
    assert sent.path == "/openai/deployments/my-gpt/chat/completions"
    assert sent.query == {"api-version": "2024-06-01"}
    assert sent.headers["api-key"] == "az-key"
    assert "authorization" not in sent.headers


@pytest.mark.parametrize("kind", ["ollama", "vllm-local"])
def test_ollama_and_custom_kinds_speak_openai(upstream, app_factory, served, kind):
    config = make_config(
        {
            "providers": {
                "p": {
                    "kind": kind,
                    "base_url": f"{upstream.url}/v1",
                    "models": ["llama3"],
                    "max_retries": 0,
                }
            }
        }
    )
    url = served(app_factory(config))
    client = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)
    out = client.chat.completions.create(
        model="llama3", messages=[{"role": "user", "content": "yo"}]
    )
    assert out.choices[0].message.content == "echo: yo"
    chunks = list(
        client.chat.completions.create(
            model="llama3", messages=[{"role": "user", "content": "yo"}], stream=True
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "echo:yo"
    )
    assert "authorization" not in upstream.requests[-1].headers  # no api_key configured


def test_env_expansion_reaches_the_upstream(upstream, app_factory):
    config = make_config(
        {"providers": {"up": openai_provider(upstream, ["m"], api_key="${UP_KEY}")}},
        env={"UP_KEY": "from-env"},
    )
    sdk_for_app(app_factory(config)).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert upstream.requests[-1].headers["authorization"] == "Bearer from-env"


# A provider's own formatting: spaces, a key order of its own, an exponent.
_RAW_CHAT = (
    b'{\n  "id": "chatcmpl-raw", "object": "chat.completion", "created": 1,\n'
    b'  "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": '
    b'"assistant", "content": "caf\\u00e9"}, "finish_reason": "stop"}],\n'
    b'  "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},'
    b' "x_score": 1e-07\n}'
)
_RAW_EMBED = (
    b'{"object": "list", "data": [{"object": "embedding", "index": 0, '
    b'"embedding": [0.1, -2e-05]}], "model": "text-embedding-3-small", '
    b'"usage": {"prompt_tokens": 4, "total_tokens": 4}}'
)


@pytest.mark.parametrize(
    ("path", "raw", "body"),
    [
        (
            "/v1/chat/completions",
            _RAW_CHAT,
            {"model": "gpt4", "messages": [{"role": "user", "content": "x"}]},
        ),
        (
            "/v1/embeddings",
            _RAW_EMBED,
            {"model": "text-embedding-3-small", "input": "x"},
        ),
    ],
)
def test_a_pass_through_answer_reaches_the_client_byte_for_byte(
    upstream, app_factory, path, raw, body
):
    """The provider's bytes are sent on as they came, not re-serialised (the
    usage tests read the same answers: the gateway still parses them)."""
    app = app_factory(_config(upstream))
    upstream.enqueue(Reply(body=raw, content_type="application/json"))
    http = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://gw")
    resp = http.post(path, json=body, headers={"authorization": "Bearer sk-none"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.content == raw
    # The mock provider's answer is the gateway's own object: serialised.
    own = http.post(
        "/v1/chat/completions",
        json={"model": "mock", "messages": [{"role": "user", "content": "a"}]},
        headers={"authorization": "Bearer sk-none"},
    )
    assert own.status_code == 200 and b"\n" not in own.content
