"""Bedrock through the gateway: the openai SDK in, boto3 out, a local Converse fake.

The fake speaks Converse's JSON and the binary event-stream framing; boto3
itself is pointed at it first to prove it faithful. No real AWS account,
credential file or environment is used.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import openai
import pytest
from botocore.config import Config as BotoConfig

from tests.chat_stream import assemble, flatten
from tests.conftest import free_port, make_config, sdk_for_app, write_toml
from tests.fakes import bedrock as fake
from tests.sse import data_lines, open_stream, streamed
from tests.upstream import Reply, Upstream

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bedrock"

TOP_SONG = {
    "type": "function",
    "function": {
        "name": "top_song",
        "description": "Get the most popular song played on a radio station.",
        "parameters": {
            "type": "object",
            "properties": {"sign": {"type": "string"}},
            "required": ["sign"],
        },
    },
}
SIGNATURE = "ErcBCkgIAhABGAIiQJ6scrubbed=="


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch, tmp_path):
    """Keep boto3 away from this machine's AWS config, credentials and metadata."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_BEARER_TOKEN_BEDROCK",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-creds"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def bedrock_up() -> Iterator[Upstream]:
    up = fake.make_upstream().start()
    yield up
    up.stop()


def provider(up: Upstream, **over: Any) -> dict[str, Any]:
    return {
        "kind": "bedrock",
        "base_url": up.url,
        "region": "us-east-1",
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "models": [MODEL],
        "max_retries": 0,
        "timeout": 5,
        **over,
    }


def config(up: Upstream, **over: Any):
    return make_config({"providers": {"bed": provider(up, **over)}})


@pytest.fixture
def sdk(bedrock_up, app_factory):
    """The openai SDK on the gateway (in-process WSGI), routed to the fake."""
    return sdk_for_app(app_factory(config(bedrock_up)))


@pytest.fixture
def sdk_served(bedrock_up, app_factory, served):
    """The openai SDK on the gateway over a real socket (for streams)."""
    url = served(app_factory(config(bedrock_up)))
    return openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)


def boto_client(up: Upstream) -> Any:
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    ).client(
        "bedrock-runtime",
        endpoint_url=up.url,
        config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def fixture(case: str, name: str) -> Any:
    return json.loads((FIXTURES / case / name).read_text())


# -- the fake is faithful: boto3 itself parses it ------------------------------


def test_boto3_parses_the_fake_converse_answer(bedrock_up):
    resp = fixture("tool_use", "response.json")
    bedrock_up.enqueue(fake.converse_reply(resp))
    out = boto_client(bedrock_up).converse(
        modelId=MODEL, messages=[{"role": "user", "content": [{"text": "q"}]}]
    )
    assert out["output"] == resp["output"]
    assert out["stopReason"] == "tool_use"
    assert out["usage"] == resp["usage"]
    assert out["ResponseMetadata"]["RequestId"] == fake.REQUEST_ID
    sent = bedrock_up.requests[-1]
    assert sent.path == f"/model/{MODEL}/converse"
    assert sent.headers["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"
    )


def test_boto3_parses_the_fake_event_stream(bedrock_up):
    events = fixture("reasoning", "stream.json")
    bedrock_up.enqueue(fake.stream_reply(events))
    out = boto_client(bedrock_up).converse_stream(
        modelId=MODEL, messages=[{"role": "user", "content": [{"text": "q"}]}]
    )
    assert list(out["stream"]) == events
    assert bedrock_up.requests[-1].path == f"/model/{MODEL}/converse-stream"


def test_boto3_parses_the_fake_errors(bedrock_up):
    client = boto_client(bedrock_up)
    bedrock_up.enqueue(fake.error_reply(400, "ValidationException", "bad input"))
    with pytest.raises(client.exceptions.ValidationException) as exc:
        client.converse(modelId=MODEL, messages=[])
    assert exc.value.response["Error"]["Message"] == "bad input"
    bedrock_up.enqueue(
        fake.stream_reply(
            [
                {"messageStart": {"role": "assistant"}},
                {"modelStreamErrorException": {"message": "model broke"}},
            ]
        )
    )
    stream = client.converse_stream(modelId=MODEL, messages=[])["stream"]
    got = []
    with pytest.raises(botocore.exceptions.EventStreamError) as exc:
        for e in stream:
            got.append(e)
    assert got == [{"messageStart": {"role": "assistant"}}]
    assert exc.value.response["Error"] == {
        "Code": "modelStreamErrorException",
        "Message": "model broke",
    }


def test_boto3_parses_the_fake_invoke_model(bedrock_up):
    out = boto_client(bedrock_up).invoke_model(
        modelId="cohere.embed-english-v3",
        body=json.dumps({"texts": ["a b", "c"], "input_type": "search_query"}),
        contentType="application/json",
        accept="application/json",
    )
    answer = json.loads(out["body"].read())
    assert answer["embeddings"] == [fake.vector("a b", 1024), fake.vector("c", 1024)]
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == "3"


def test_a_corrupt_frame_is_rejected_by_boto3(bedrock_up):
    good = fake.event_frame({"messageStart": {"role": "assistant"}})
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])  # break the message CRC
    bedrock_up.enqueue(Reply(chunks=[good, bad], content_type=fake.EVENTSTREAM))
    stream = boto_client(bedrock_up).converse_stream(modelId=MODEL, messages=[])
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        list(stream["stream"])


# -- chat ----------------------------------------------------------------------


def test_chat_is_translated_signed_and_counted(sdk, bedrock_up):
    out = sdk.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello"},
        ],
        max_tokens=50,
        temperature=0.2,
    )
    assert out.choices[0].message.content == "echo: hello"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens == 12 and out.usage.completion_tokens == 5
    assert out.id == f"chatcmpl-{fake.REQUEST_ID}"
    sent = bedrock_up.requests[-1]
    assert sent.path == f"/model/{MODEL}/converse"
    auth = sent.headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/bedrock/aws4_request" in auth
    assert sent.json == {
        "messages": [{"role": "user", "content": [{"text": "hello"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.2},
    }


def test_standard_credential_chain_is_used_without_keys(
    bedrock_up, app_factory, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    cfg = config(bedrock_up, access_key=None, secret_key=None, region="eu-west-3")
    sdk_for_app(app_factory(cfg)).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    auth = bedrock_up.requests[-1].headers["authorization"]
    assert "Credential=AKIDFROMENVIRONMENT/" in auth
    assert "/eu-west-3/bedrock/aws4_request" in auth


def test_stream_is_translated(sdk_served, bedrock_up):
    chunks = list(
        sdk_served.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
        )
    )
    got = assemble(chunks)
    assert got["content"] == "echo: one two three"
    assert got["finish_reason"] == "stop"
    assert got["usage"] is None, "usage chunk leaked to a client that did not ask"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert bedrock_up.requests[-1].path == f"/model/{MODEL}/converse-stream"


def test_stream_usage_when_asked_equals_what_bedrock_reported(sdk_served):
    chunks = list(
        sdk_served.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 12
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.total_tokens == 17


def test_tools_round_trip_in_the_sdk_types(sdk, bedrock_up):
    bedrock_up.enqueue(fake.converse_reply(fixture("tool_use", "response.json")))
    out = sdk.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "What is the most popular song on WZPZ?"}
        ],
        tools=[TOP_SONG],
        tool_choice="required",
    )
    call = out.choices[0].message.tool_calls[0]
    assert call.id == "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"
    assert call.function.name == "top_song"
    assert json.loads(call.function.arguments) == {"sign": "WZPZ"}
    assert out.choices[0].finish_reason == "tool_calls"
    sent = bedrock_up.requests[-1].json
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "top_song"


def test_agent_loop_with_signed_reasoning_runs_unchanged(sdk_served, bedrock_up):
    """Tools, a tool call, its result, a streamed final answer, honest usage."""
    first = fake.response(
        [
            {
                "reasoningContent": {
                    "reasoningText": {"text": "Call top_song.", "signature": SIGNATURE}
                }
            },
            {"text": "Let me check."},
            {
                "toolUse": {
                    "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                    "name": "top_song",
                    "input": {"sign": "WZPZ"},
                }
            },
        ],
        stop_reason="tool_use",
        input_tokens=412,
        output_tokens=58,
    )
    final = fake.response(
        [
            {
                "text": "The most popular song on WZPZ is Elemental Hotel "
                "by 8 Storey Hike."
            }
        ],
        input_tokens=521,
        output_tokens=19,
        cacheReadInputTokens=100,
    )
    bedrock_up.enqueue(
        fake.converse_reply(first), fake.stream_reply(fake.events_for(final))
    )

    def top_song(sign: str) -> str:
        return json.dumps({"song": "Elemental Hotel", "artist": "8 Storey Hike"})

    messages: list[Any] = [
        {"role": "user", "content": "What is the most popular song on WZPZ?"}
    ]
    reply = sdk_served.chat.completions.create(
        model=MODEL, messages=messages, tools=[TOP_SONG], reasoning_effort="low"
    )
    assert reply.usage.prompt_tokens == 412 and reply.usage.completion_tokens == 58
    msg = reply.choices[0].message
    messages.append(msg)  # the SDK's own object, echoed as-is
    for call in msg.tool_calls:
        args = json.loads(call.function.arguments)
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": top_song(**args)}
        )
    stream = sdk_served.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[TOP_SONG],
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )
    got = assemble(list(stream))
    assert got["content"] == final["output"]["message"]["content"][0]["text"]
    assert got["finish_reason"] == "stop"
    assert got["usage"]["prompt_tokens"] == 521 + 100
    assert got["usage"]["completion_tokens"] == 19
    assert got["usage"]["prompt_tokens_details"]["cached_tokens"] == 100

    second = bedrock_up.requests[-1].json
    assert bedrock_up.requests[-1].path.endswith("/converse-stream")
    assert second["messages"][1] == {
        "role": "assistant",
        "content": [
            {
                "reasoningContent": {
                    "reasoningText": {"text": "Call top_song.", "signature": SIGNATURE}
                }
            },
            {"text": "Let me check."},
            {
                "toolUse": {
                    "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                    "name": "top_song",
                    "input": {"sign": "WZPZ"},
                }
            },
        ],
    }
    assert second["messages"][2] == {
        "role": "user",
        "content": [
            {
                "toolResult": {
                    "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                    "content": [
                        {
                            "text": '{"song": "Elemental Hotel", '
                            '"artist": "8 Storey Hike"}'
                        }
                    ],
                }
            }
        ],
    }
    assert second["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }


def test_streamed_agent_turn_echoes_thinking_blocks(sdk_served, bedrock_up):
    """A client that assembles the stream can echo the signed block too."""
    first = fake.response(
        [
            {
                "reasoningContent": {
                    "reasoningText": {"text": "Use the tool.", "signature": SIGNATURE}
                }
            },
            {
                "toolUse": {
                    "toolUseId": "tu_1",
                    "name": "top_song",
                    "input": {"sign": "WKRP"},
                }
            },
        ],
        stop_reason="tool_use",
    )
    bedrock_up.enqueue(fake.stream_reply(fake.events_for(first, piece=3)))
    got = assemble(
        list(
            sdk_served.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "top song on WKRP?"}],
                tools=[TOP_SONG],
                stream=True,
            )
        )
    )
    assert got["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Use the tool.", "signature": SIGNATURE}
    ]
    call = got["tool_calls"][0]
    sdk_served.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "top song on WKRP?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {
                            "name": call["name"],
                            "arguments": call["arguments"],
                        },
                    }
                ],
                "thinking_blocks": got["thinking_blocks"],
            },
            {"role": "tool", "tool_call_id": call["id"], "content": "Some Song"},
        ],
        tools=[TOP_SONG],
    )
    sent = bedrock_up.requests[-1].json["messages"][1]["content"]
    assert sent[0] == {
        "reasoningContent": {
            "reasoningText": {"text": "Use the tool.", "signature": SIGNATURE}
        }
    }
    assert sent[1]["toolUse"]["input"] == {"sign": "WKRP"}


def test_stream_equals_non_stream(sdk_served, bedrock_up):
    answer = fake.response(
        [
            {
                "reasoningContent": {
                    "reasoningText": {"text": "Hmm.", "signature": "s1"}
                }
            },
            {"text": "Two calls coming: "},
            {
                "toolUse": {
                    "toolUseId": "t1",
                    "name": "top_song",
                    "input": {"sign": "A"},
                }
            },
            {
                "toolUse": {
                    "toolUseId": "t2",
                    "name": "top_song",
                    "input": {"sign": "B", "deep": {"x": [1, 2]}},
                }
            },
        ],
        stop_reason="tool_use",
        input_tokens=40,
        output_tokens=33,
        cacheReadInputTokens=7,
        cacheWriteInputTokens=3,
    )
    bedrock_up.enqueue(
        fake.converse_reply(answer), fake.stream_reply(fake.events_for(answer, 4))
    )
    kw = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "q"}],
        "tools": [TOP_SONG],
    }
    whole = flatten(sdk_served.chat.completions.create(**kw))
    streamed = assemble(
        list(
            sdk_served.chat.completions.create(
                **kw, stream=True, stream_options={"include_usage": True}
            )
        )
    )
    assert streamed == whole
    assert whole["finish_reason"] == "tool_calls"
    assert [c["id"] for c in whole["tool_calls"]] == ["t1", "t2"]
    assert whole["usage"]["prompt_tokens"] == 50


def test_image_data_url_is_sent_as_bytes(sdk, bedrock_up):
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    sdk.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    block = bedrock_up.requests[-1].json["messages"][0]["content"][1]
    assert block["image"]["format"] == "png"
    assert base64.b64decode(block["image"]["source"]["bytes"]) == png


def test_http_image_url_is_refused_before_calling_bedrock(sdk, bedrock_up):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.png"},
                        }
                    ],
                }
            ],
        )
    assert exc.value.body["param"] == "messages[0].content[0].image_url.url"
    assert "data:" in exc.value.body["message"]
    assert bedrock_up.requests == []


def test_unsupported_parameter_is_a_400_naming_it(sdk, bedrock_up):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], seed=42
        )
    assert exc.value.body["code"] == "unsupported_parameter"
    assert exc.value.body["param"] == "seed"
    assert "bedrock" in exc.value.body["message"]
    assert bedrock_up.requests == []


# -- errors ----------------------------------------------------------------------


def test_validation_exception_is_a_400_with_bedrock_message(sdk, bedrock_up):
    msg = "A conversation must start with a user message. Try again."
    bedrock_up.enqueue(fake.error_reply(400, "ValidationException", msg))
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert msg in exc.value.body["message"]
    assert len(bedrock_up.requests) == 1


def test_validation_exception_on_stream_is_a_400(sdk_served, bedrock_up):
    bedrock_up.enqueue(fake.error_reply(400, "ValidationException", "bad stream"))
    with pytest.raises(openai.BadRequestError) as exc:
        list(
            sdk_served.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert "bad stream" in exc.value.body["message"]


def test_throttling_is_retried_then_503(bedrock_up, app_factory):
    sdk = sdk_for_app(app_factory(config(bedrock_up, max_retries=1)))
    for _ in range(2):
        bedrock_up.enqueue(
            fake.error_reply(429, "ThrottlingException", "Too many requests")
        )
    with pytest.raises(openai.APIStatusError) as exc:
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 503
    assert "Too many requests" in exc.value.body["message"]
    assert len(bedrock_up.requests) == 2


def test_throttling_then_success_is_invisible_to_the_client(bedrock_up, app_factory):
    sdk = sdk_for_app(app_factory(config(bedrock_up, max_retries=1)))
    bedrock_up.enqueue(fake.error_reply(429, "ThrottlingException", "slow down"))
    out = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "again"}]
    )
    assert out.choices[0].message.content == "echo: again"
    assert len(bedrock_up.requests) == 2


@pytest.mark.parametrize(
    ("status", "code", "expect_status", "expect_text"),
    [
        (403, "AccessDeniedException", 502, "authentication with the provider failed"),
        (
            403,
            "UnrecognizedClientException",
            502,
            "authentication with the provider failed",
        ),
        (404, "ResourceNotFoundException", 404, "model not found"),
        (503, "ServiceUnavailableException", 502, "model not found"),
        (500, "InternalServerException", 502, "model not found"),
        (408, "ModelTimeoutException", 504, "timed out"),
        (424, "ModelErrorException", 502, "model not found"),
    ],
)
def test_bedrock_errors_map_to_gateway_statuses(
    sdk, bedrock_up, status, code, expect_status, expect_text
):
    bedrock_up.enqueue(fake.error_reply(status, code, "model not found"))
    with pytest.raises(openai.APIStatusError) as exc:
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == expect_status
    assert expect_text in exc.value.body["message"]
    assert len(bedrock_up.requests) == 1, "boto3 retried behind routing's back"


def test_exception_event_mid_stream_is_the_final_error_event(
    bedrock_up, app_factory, served
):
    bedrock_up.enqueue(
        fake.stream_reply(
            [
                {"messageStart": {"role": "assistant"}},
                {
                    "contentBlockDelta": {
                        "delta": {"text": "Hel"},
                        "contentBlockIndex": 0,
                    }
                },
                {"throttlingException": {"message": "Too many tokens, slow down"}},
            ]
        )
    )
    url = served(app_factory(config(bedrock_up)))
    data = data_lines(url, streamed(MODEL))
    assert json.loads(data[1])["choices"][0]["delta"]["content"] == "Hel"
    last = json.loads(data[-1])
    assert "Too many tokens, slow down" in last["error"]["message"]
    assert "[DONE]" not in data


def test_exception_event_mid_stream_raises_in_the_sdk(sdk_served, bedrock_up):
    bedrock_up.enqueue(
        fake.stream_reply(
            [
                {"messageStart": {"role": "assistant"}},
                {"modelStreamErrorException": {"message": "model broke mid-way"}},
            ]
        )
    )
    with pytest.raises(openai.APIError, match="model broke mid-way"):
        list(
            sdk_served.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
            )
        )


def test_read_timeout_is_504(bedrock_up, app_factory):
    gate = threading.Event()
    bedrock_up.enqueue(Reply(hang=gate, json={}))
    sdk = sdk_for_app(app_factory(config(bedrock_up, timeout=1)))
    try:
        with pytest.raises(openai.APIStatusError) as exc:
            sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}]
            )
    finally:
        gate.set()
    assert exc.value.status_code == 504


def test_unreachable_endpoint_is_502(app_factory):
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = make_config(
        {
            "providers": {
                "bed": {
                    "kind": "bedrock",
                    "base_url": dead,
                    "access_key": ACCESS_KEY,
                    "secret_key": SECRET_KEY,
                    "models": [MODEL],
                    "max_retries": 0,
                    "timeout": 2,
                }
            }
        }
    )
    with pytest.raises(openai.APIStatusError) as exc:
        sdk_for_app(app_factory(cfg)).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    assert "connection failed" in exc.value.body["message"]


# -- under gunicorn's gevent worker ----------------------------------------------


def test_bedrock_under_gunicorn_gevent(bedrock_up, gunicorn, tmp_path):
    cfg = write_toml(
        tmp_path / "crabllm.toml",
        f"""
[providers.bed]
kind = "bedrock"
base_url = "{bedrock_up.url}"
region = "us-east-1"
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
models = ["{MODEL}"]
max_retries = 0
timeout = 10
""",
    )
    env = {
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-creds"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    srv = gunicorn(cfg, workers=1, env=env)
    client = openai.OpenAI(api_key="x", base_url=f"{srv.url}/v1", max_retries=0)
    out = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "gevent"}]
    )
    assert out.choices[0].message.content == "echo: gevent"
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "gevent stream"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert assemble(chunks)["content"] == "echo: gevent stream"
    assert chunks[-1].usage.total_tokens == 17


# -- the transport ----------------------------------------------------------------


def test_client_uses_the_regional_endpoint_unless_base_url_is_set(bedrock_up):
    from crabllm_sync.providers import base_urls, bedrock
    from crabllm_sync.routing import Registry

    cfg = make_config(
        {
            "providers": {
                "aws": {"kind": "bedrock", "region": "eu-west-3", "models": ["m1"]},
                "local": provider(bedrock_up, models=["m2"]),
            }
        }
    )
    registry = Registry(cfg, base_urls())
    (aws,) = registry.models["m1"]
    (local,) = registry.models["m2"]
    assert aws.base_url == ""
    client = bedrock.make_session(aws)
    assert client.meta.endpoint_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert client.meta.region_name == "eu-west-3"
    assert bedrock.make_session(local).meta.endpoint_url == bedrock_up.url
    conf = client.meta.config
    assert conf.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert conf.read_timeout == 30 and conf.connect_timeout == 10
    assert conf.max_pool_connections >= 100
    assert conf.tcp_keepalive is True


def test_missing_credentials_is_a_502_auth_failure_without_retry(
    bedrock_up, app_factory
):
    cfg = config(bedrock_up, access_key=None, secret_key=None, max_retries=2)
    with pytest.raises(openai.APIStatusError) as exc:
        sdk_for_app(app_factory(cfg)).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    assert "authentication with the provider failed" in exc.value.body["message"]
    assert bedrock_up.requests == []


def test_titan_embeddings_one_call_per_input(bedrock_up, app_factory):
    titan = "amazon.titan-embed-text-v2:0"
    cfg = config(bedrock_up, models=[MODEL, titan])
    out = sdk_for_app(app_factory(cfg)).embeddings.create(
        model=titan, input=["hello world", "a b c"], dimensions=256
    )
    assert [d.index for d in out.data] == [0, 1]
    assert out.data[0].embedding == pytest.approx(fake.vector("hello world", 256))
    assert out.data[1].embedding == pytest.approx(fake.vector("a b c", 256))
    assert out.usage.prompt_tokens == 2 + 3
    sent = bedrock_up.requests
    assert [r.path for r in sent] == [f"/model/{titan}/invoke"] * 2
    assert [r.json for r in sent] == [
        {"inputText": "hello world", "dimensions": 256},
        {"inputText": "a b c", "dimensions": 256},
    ]


def test_cohere_embeddings_count_tokens_from_the_header(bedrock_up, app_factory):
    cohere = "cohere.embed-english-v3"
    cfg = config(bedrock_up, models=[cohere])
    sdk = sdk_for_app(app_factory(cfg))
    # The openai SDK asks for base64 by default and decodes it.
    out = sdk.embeddings.create(model=cohere, input="the quick brown fox")
    assert out.data[0].embedding == pytest.approx(
        fake.vector("the quick brown fox", 1024), rel=1e-6
    )
    assert out.usage.prompt_tokens == 4
    assert bedrock_up.requests[-1].json == {
        "texts": ["the quick brown fox"],
        "input_type": "search_document",
    }
    sdk.embeddings.create(
        model=cohere,
        input=["q"],
        encoding_format="float",
        extra_body={"input_type": "search_query"},
    )
    assert bedrock_up.requests[-1].json["input_type"] == "search_query"


def test_embeddings_refuse_what_the_model_cannot_do(bedrock_up, app_factory):
    sdk = sdk_for_app(app_factory(config(bedrock_up)))
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.embeddings.create(model=MODEL, input="hello")
    assert exc.value.body["param"] == "model"
    assert "bedrock" in exc.value.body["message"]
    assert bedrock_up.requests == []


def test_client_disconnect_closes_the_bedrock_stream(bedrock_up, app_factory, served):
    gate = threading.Event()
    frames = [
        fake.event_frame(e)
        for e in fake.events_for(fake.response([{"text": "a long answer " * 20}]), 5)
    ]

    never = threading.Event()

    def pieces():
        yield from frames[:3]
        gate.wait(10)  # hold the rest until the client has gone
        yield from frames[3:-2]
        # Without the gateway closing the connection, this stream stays open.
        never.wait(30)
        yield from frames[-2:]

    bedrock_up.enqueue(Reply(chunks=pieces(), content_type=fake.EVENTSTREAM))
    url = served(app_factory(config(bedrock_up)))
    with open_stream(url, streamed(MODEL)) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and "a long" in line:
                break
    gate.set()
    try:
        assert bedrock_up.streams_closed.wait(10), "the Bedrock stream was left open"
    finally:
        never.set()


def test_connection_dropped_mid_stream_ends_with_an_error_event(
    bedrock_up, app_factory, served
):
    events = fake.events_for(fake.response([{"text": "x" * 60}]), 10)
    bedrock_up.enqueue(fake.stream_reply(events, drop_after=3))
    url = served(app_factory(config(bedrock_up)))
    data = data_lines(url, streamed(MODEL))
    assert json.loads(data[1])["choices"][0]["delta"]["content"] == "x" * 10
    assert "error" in json.loads(data[-1])
    assert "[DONE]" not in data


def test_botocore_parameter_validation_is_a_400(sdk, bedrock_up):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stop=["", "END"]
        )
    assert "stopSequences" in exc.value.body["message"]
    assert bedrock_up.requests == []


def test_half_configured_keys_are_a_clear_502(bedrock_up, app_factory):
    cfg = config(bedrock_up, secret_key=None)
    with pytest.raises(openai.APIStatusError) as exc:
        sdk_for_app(app_factory(cfg)).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    assert "access_key and secret_key" in exc.value.body["message"]
    assert bedrock_up.requests == []


def test_throttled_bedrock_falls_back_to_the_next_deployment(bedrock_up, app_factory):
    cfg = make_config(
        {
            "providers": {
                "bed": provider(bedrock_up, weight=1),
                "spare": {"kind": "mock", "models": [MODEL], "weight": 0},
            }
        }
    )
    bedrock_up.enqueue(fake.error_reply(429, "ThrottlingException", "slow down"))
    out = sdk_for_app(app_factory(cfg)).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "fallback"}]
    )
    assert out.choices[0].message.content == "Mock reply: fallback"
    assert len(bedrock_up.requests) == 1


def test_concurrent_streams_share_one_client(bedrock_up, app_factory, served):
    from concurrent.futures import ThreadPoolExecutor

    url = served(app_factory(config(bedrock_up)))
    client = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)

    def one(i: int) -> str:
        chunks = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"n{i}"}],
            stream=True,
        )
        return assemble(list(chunks))["content"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(one, range(16)))
    assert got == [f"echo: n{i}" for i in range(16)]
    assert len(bedrock_up.requests) == 16
