"""Anthropic Messages API models: shape checks of requests, and the response
and event models the OpenAPI document is generated from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crabllm_sync.wire.openai import MAX_TOKENS


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- Request models (shape checks; the client's dict is what is forwarded) ----


class ContentBlock(_Open):
    type: str = Field(min_length=1)


class TextBlock(ContentBlock):
    text: str


class ImageBlock(ContentBlock):
    source: dict[str, Any]


class DocumentBlock(ContentBlock):
    source: dict[str, Any]
    title: str | None = None


class ToolUseBlock(ContentBlock):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ToolResultBlock(ContentBlock):
    tool_use_id: str = Field(min_length=1)
    content: str | list[ContentBlock] | None = None
    is_error: bool | None = None


# Checked before translation: their fields are what the translation reads.
_BLOCKS: dict[str, type[ContentBlock]] = {
    "text": TextBlock,
    "image": ImageBlock,
    "document": DocumentBlock,
    "tool_use": ToolUseBlock,
    "tool_result": ToolResultBlock,
}


class Message(_Open):
    # "system": a system turn inside messages (a beta Claude Code sends).
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class Tool(_Open):
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(_Open):
    type: str = Field(min_length=1)  # auto | any | tool | none (native: any)
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class NativeRequest(_Open):
    """What the gateway itself reads of a request passed through as it is
    (model, limits, budget); the provider checks the rest, betas included."""

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    stream: bool | None = None


class CountTokensRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1, le=MAX_TOKENS)
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    metadata: dict[str, Any] | None = None


# -- Response models (the OpenAPI document is generated from these) ----------


class Usage(_Open):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageResponse(_Open):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: Usage


class CountTokensResponse(_Open):
    input_tokens: int


class StreamEvent(_Open):
    """One event of a streamed message; `type` repeats the SSE event name."""

    type: Literal[
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    ]
    index: int | None = None
    message: MessageResponse | None = None
    content_block: ContentBlock | None = None
    delta: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


class ErrorDetail(_Open):
    type: str
    message: str


class ErrorResponse(_Open):
    type: Literal["error"]
    error: ErrorDetail
