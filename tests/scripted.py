"""A scripted tool-using model behind the OpenAI and Anthropic wire formats.

The model asks for a tool when the user's last words contain TOOL_MARKER and
tools are declared (`plan` picks the tool and its arguments from their names),
and once the tool's result comes back it answers `Result: <result>`. Anything
else is echoed. Used by the SDK tests and the coding agents' tests: one turn
that ends in text, and one that goes through a tool call and back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from tests.fakes import anthropic as fake_ant
from tests.fakes import google as fake_google
from tests.fakes import openai as fake_oai
from tests.upstream import Recorded, Reply, Upstream

TOOL_MARKER = "USE-THE-TOOL"
Plan = Callable[[list[str]], tuple[str, dict[str, Any]]]


def first_tool(names: list[str]) -> tuple[str, dict[str, Any]]:
    return names[0], {"city": "Paris"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for block in content or []:
        if block.get("type") == "text":
            out.append(block.get("text") or "")
        elif block.get("type") == "tool_result":
            out.append(_text(block.get("content")))
    return "\n".join(out)


class ToolModel:
    """The decision, whatever the wire: ('call', name, args) or ('say', text)."""

    def __init__(self, plan: Plan = first_tool) -> None:
        self.plan = plan
        self.calls = 0

    def decide(
        self, last_user: str, result: str | None, tools: list[str]
    ) -> tuple[Any, ...]:
        if result is not None:
            return ("say", f"Result: {result.strip()}")
        if TOOL_MARKER in last_user and tools:
            self.calls += 1
            name, args = self.plan(tools)
            return ("call", name, args)
        return ("say", f"echo: {last_user.strip()[-200:]}")


class OpenAIToolUpstream(Upstream):
    """OpenAI chat completions (plain and SSE) driven by a ToolModel."""

    def __init__(self, model: ToolModel | None = None) -> None:
        super().__init__(
            {
                fake_oai.CHAT_PATH: self.chat,
                fake_oai.EMBED_PATH: fake_oai.embeddings_handler,
            }
        )
        self.model = model or ToolModel()

    def chat(self, rec: Recorded) -> Reply:
        body = rec.json
        msgs = body["messages"]
        last = msgs[-1]
        result = _text(last.get("content")) if last["role"] == "tool" else None
        user = next((m for m in reversed(msgs) if m["role"] == "user"), {})
        names = [t["function"]["name"] for t in body.get("tools") or []]
        decision = self.model.decide(_text(user.get("content")), result, names)
        model = body.get("model", "?")
        if decision[0] == "call":
            call = {
                "id": f"call_{self.model.calls}",
                "type": "function",
                "function": {"name": decision[1], "arguments": json.dumps(decision[2])},
            }
            if body.get("stream"):
                return Reply(events=_stream_call(model, call))
            answer = fake_oai.completion(model, "", finish_reason="tool_calls")
            answer["choices"][0]["message"].update(content=None, tool_calls=[call])
            return Reply(json=answer)
        if body.get("stream"):
            pieces = decision[1].split(" ")
            pieces = [p if i == 0 else " " + p for i, p in enumerate(pieces)]
            return Reply(events=fake_oai.stream_events(model, pieces))
        return Reply(json=fake_oai.completion(model, decision[1]))


def _stream_call(model: str, call: dict[str, Any]) -> list[Any]:
    base = {
        "id": "chatcmpl-up2",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
    }
    args = call["function"]["arguments"]
    first = {
        **call,
        "index": 0,
        "function": {"name": call["function"]["name"], "arguments": ""},
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    return [
        chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[:5]}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[5:]}}]}),
        chunk({}, "tool_calls"),
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
        },
        "[DONE]",
    ]


class AnthropicToolUpstream(fake_ant.AnthropicUpstream):
    """Anthropic Messages (plain and SSE) driven by a ToolModel; the fake's
    own checks (SDK request types, alternating roles, tool ids) still apply."""

    def __init__(self, model: ToolModel | None = None) -> None:
        super().__init__()
        self.model = model or ToolModel()

    def handle(self, rec: Recorded) -> Reply:
        body = rec.json
        if isinstance(body, dict) and body.get("messages"):
            rec = _without_system_turns(rec)
            body = rec.json
            self.answers.clear()
            last = body["messages"][-1]
            blocks = last["content"] if isinstance(last["content"], list) else []
            results = [b for b in blocks if b.get("type") == "tool_result"]
            result = (
                "\n".join(_text(b.get("content")) for b in results) if results else None
            )
            names = [t["name"] for t in body.get("tools") or [] if "name" in t]
            decision = self.model.decide(_text(last["content"]), result, names)
            if decision[0] == "call":
                block = fake_ant.tool_use(
                    decision[1], decision[2], f"toolu_{self.model.calls:02d}"
                )
                self.queue(fake_ant.Answer([block], stop_reason="tool_use"))
            else:
                self.queue(fake_ant.text(decision[1]))
        return super().handle(rec)


def _without_system_turns(rec: Recorded) -> Recorded:
    """System turns inside `messages` are a beta the API accepts with an
    `anthropic-beta` header (Claude Code sends them); the installed SDK's
    types, which the fake checks against, do not know them yet."""
    body = rec.json
    turns = body["messages"]
    if not rec.headers.get("anthropic-beta") or all(
        m.get("role") != "system" for m in turns
    ):
        return rec
    kept = [m for m in turns if m.get("role") != "system"]
    data = json.dumps({**body, "messages": kept}).encode()
    return dataclasses.replace(rec, body=data)


class GoogleToolUpstream(Upstream):
    """Gemini's generateContent and streamGenerateContent (alt=sse) driven by
    a ToolModel; the key is checked as Gemini does."""

    def __init__(self, model: ToolModel | None = None) -> None:
        super().__init__(
            {
                fake_google.GENERATE: self.generate,
                fake_google.STREAM: self.generate,
                r"/models/[^/]+:countTokens$": self.count,
            }
        )
        self.model = model or ToolModel()

    def generate(self, rec: Recorded) -> Reply:
        if rec.headers.get("x-goog-api-key") != fake_google.API_KEY:
            return fake_google.error(400, "API key not valid.", "INVALID_ARGUMENT")
        body = rec.json
        last = body["contents"][-1]["parts"]
        results = [p["functionResponse"] for p in last if "functionResponse" in p]
        result = json.dumps([r.get("response") for r in results]) if results else None
        user = next(
            c
            for c in reversed(body["contents"])
            if any("text" in p for p in c["parts"])
        )
        text = " ".join(p["text"] for p in user["parts"] if "text" in p)
        names = [
            d["name"]
            for t in body.get("tools") or []
            for d in t.get("functionDeclarations") or []
        ]
        decision = self.model.decide(text, result, names)
        if decision[0] == "call":
            parts = [{"functionCall": {"name": decision[1], "args": decision[2]}}]
        else:
            parts = [{"text": decision[1]}]
        usage = {
            "promptTokenCount": 11,
            "candidatesTokenCount": 5,
            "totalTokenCount": 16,
        }
        events = fake_google.stream_events(
            parts, usage, model="gemini", response_id="r1"
        )
        if rec.path.endswith(":streamGenerateContent"):
            return Reply(events=events)
        return Reply(
            json={
                "candidates": [
                    {
                        "content": {"role": "model", "parts": parts},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": usage,
                "modelVersion": "gemini",
                "responseId": "r1",
            }
        )

    def count(self, rec: Recorded) -> Reply:
        return Reply(json={"totalTokens": 42})
