"""OpenAI request models: validate a parsed body, name the bad field, keep extras.

Validation checks shape only; the gateway keeps forwarding the client's own dict,
so fields we do not model reach OpenAI-compatible upstreams untouched.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from crabllm_sync.errors import InvalidRequestError

# Bound on token counts a client may ask for: providers read them as 32-bit
# integers, and the budget reserves max_tokens x price before dispatch (an
# unbounded count overflowed the storage counter: a 500 found by schemathesis).
MAX_TOKENS = 2**31 - 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class FunctionDef(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: Literal["function"] = "function"
    function: FunctionDef


class ChatRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    seed: int | None = None


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1, le=MAX_TOKENS)


class ImageRequest(_Open):
    model: str = Field("dall-e-2", min_length=1)
    prompt: str = Field(min_length=1)
    n: int | None = Field(None, ge=1, le=10)
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None


class SpeechRequest(_Open):
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=4096)
    voice: str | dict[str, Any]
    response_format: str | None = None
    speed: float | None = Field(None, ge=0.25, le=4.0)


class TranscriptionRequest(_Open):
    """The form fields of /v1/audio/transcriptions and /translations (file aside).

    Form values are text, so they are read as a form is (temperature "0.2"
    is the number 0.2): strict typing refused every temperature the SDK sent.
    """

    model_config = ConfigDict(extra="allow", strict=False)

    model: str = Field(min_length=1)
    language: str | None = None
    prompt: str | None = None
    response_format: (
        Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"] | None
    ) = None
    temperature: float | None = Field(None, ge=0, le=1)


# -- Response models: what the gateway answers (the OpenAPI document's source) --


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int


class AssistantMessage(_Open):
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class Choice(_Open):
    index: int
    message: AssistantMessage
    finish_reason: str | None


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class ChunkChoice(_Open):
    index: int
    delta: dict[str, Any]
    finish_reason: str | None = None


class ChatCompletionChunk(_Open):
    """One `data:` event of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class Embedding(_Open):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str


class EmbeddingResponse(_Open):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage | None = None


class Model(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Open):
    object: Literal["list"]
    data: list[Model]


class Image(_Open):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(_Open):
    created: int
    data: list[Image]


class TranscriptionResponse(_Open):
    """The `json` response_format; text, srt and vtt answer plain text."""

    text: str


class ErrorDetail(_Open):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Open):
    error: ErrorDetail


# -- Usage of the non-token endpoints (priced per image, character, second) ----


def image_usage(response: Any) -> dict[str, Any] | None:
    """{"images": n}, plus token counts when the provider reports them."""
    if not isinstance(response, dict):
        return None
    out: dict[str, Any] = {"images": len(response.get("data") or [])}
    out.update(_token_usage(response.get("usage")))
    return out


def audio_usage(content_type: str, content: bytes) -> dict[str, Any] | None:
    """{"seconds": x} or token counts from a JSON transcription answer."""
    if "json" not in content_type:
        return None
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if isinstance(usage, dict) and usage.get("type") == "duration":
        return {"seconds": float(usage.get("seconds") or 0)}
    tokens = _token_usage(usage)
    if tokens:
        return tokens
    if isinstance(body.get("duration"), int | float):  # verbose_json
        return {"seconds": float(body["duration"])}
    return None


def _token_usage(usage: Any) -> dict[str, Any]:
    """OpenAI's input/output token usage (images, audio) -> prompt/completion."""
    if not isinstance(usage, dict) or "input_tokens" not in usage:
        return {}
    prompt = usage.get("input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }


_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}


def validate(model: type[BaseModel], body: Any) -> None:
    """Check `body` against `model`; InvalidRequestError names the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    try:
        model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "is required"
        raise InvalidRequestError(f"'{loc}': {msg}", param=loc) from None
