"""The OpenAI Responses API: POST /v1/responses (bridged or native),
GET/DELETE /v1/responses/<id>, GET /v1/responses/<id>/input_items.

A model whose every deployment takes the format natively (openai, azure)
gets the body as it is; every other model goes through the codec
(formats/responses) and the chat pipeline. What a bridged model cannot do is
left out visibly (x-crabllm-omitted, a log line, a metric) or, with
`[responses] strict`, refused by name. Errors render in OpenAI's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, request

from crabllm_sync.context import RequestContext
from crabllm_sync.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    UnsupportedError,
)
from crabllm_sync.extensions import key_name
from crabllm_sync.extensions.metrics import OMITTED
from crabllm_sync.formats import responses as fmt
from crabllm_sync.formats.responses import native
from crabllm_sync.gateway import Gateway
from crabllm_sync.pipeline.route import PINNED_PROVIDER
from crabllm_sync.response_store import ResponseStore, Stored, open_store
from crabllm_sync.views.openai import parse
from crabllm_sync.views.responses import answer_headers, json_response
from crabllm_sync.views.streaming import sse_stream
from crabllm_sync.wire.responses import ResponsesRequest

log = logging.getLogger(__name__)

OMITTED_HEADER = "x-crabllm-omitted"


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("responses_api", __name__)
    store = open_store(
        gw.config.storage.kind,
        gw.db,
        gw.storage,
        gw.clock,
        flush_interval=gw.config.responses.flush_interval,
    )
    gw.on_close.append(store.close)  # its buffer is written at worker exit

    @bp.post("/v1/responses")
    def create() -> Response:
        ctx, body = parse(gw, "responses", ResponsesRequest)
        previous = _previous(store, ctx, body)
        if gw.serves_natively(body["model"], fmt.FORMAT):
            return _native(gw, store, ctx, body, previous)
        return _bridged(gw, store, ctx, body, previous)

    @bp.get("/v1/responses/<response_id>")
    def retrieve(response_id: str) -> Response:
        ctx = gw.begin("responses", request.headers)
        return json_response(_find(store, ctx, response_id).response)

    @bp.delete("/v1/responses/<response_id>")
    def delete(response_id: str) -> Response:
        ctx = gw.begin("responses", request.headers)
        if not store.delete(response_id, key_name(ctx.principal)):
            raise _not_found(response_id)
        return json_response({"id": response_id, "object": "response", "deleted": True})

    @bp.get("/v1/responses/<response_id>/input_items")
    def input_items(response_id: str) -> Response:
        ctx = gw.begin("responses", request.headers)
        items = list(_find(store, ctx, response_id).input_items)
        return json_response(_page(items))

    return bp


def _not_found(response_id: str) -> NotFoundError:
    return NotFoundError(
        f"Response with id '{response_id}' not found.", param="response_id"
    )


def _find(store: ResponseStore, ctx: RequestContext, response_id: str) -> Stored:
    record = store.get(response_id, key_name(ctx.principal))
    if record is None:
        raise _not_found(response_id)
    return record


def _previous(
    store: ResponseStore, ctx: RequestContext, body: dict[str, Any]
) -> Stored | None:
    """The stored response a follow-up continues (another key's is not found)."""
    previous_id = body.get("previous_response_id")
    if not previous_id:
        return None
    record = store.get(previous_id, key_name(ctx.principal))
    if record is None:
        err = _not_found(previous_id)
        err.param = "previous_response_id"
        raise err
    return record


def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A page of input items (newest first unless order=asc), after `after`."""
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("'order': expected 'asc' or 'desc'", param="order")
    if order == "desc":
        items.reverse()
    after = request.args.get("after")
    if after:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        raise InvalidRequestError(
            "'limit': expected an integer", param="limit"
        ) from None
    if not 1 <= limit <= 100:
        raise InvalidRequestError("'limit': between 1 and 100", param="limit")
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


def _omitted(
    gw: Gateway, ctx: RequestContext, body: dict[str, Any], omitted: list[str]
) -> None:
    """Refuse (strict) or name what the bridged model leaves out."""
    if not omitted:
        return
    if gw.config.responses.strict:
        raise UnsupportedError(
            f"'{omitted[0]}' is not supported for model '{body['model']}' "
            "(its provider has no equivalent)",
            param=omitted[0],
        )
    ctx.headers[OMITTED_HEADER] = ", ".join(omitted)
    ctx.state[OMITTED] = list(omitted)
    log.warning(
        "responses: model %s leaves out %s (request %s)",
        body["model"],
        ", ".join(omitted),
        ctx.request_id,
    )


# Kinds whose adapter maps chat's web_search_options to the provider's own
# search (Anthropic's web search tool, Gemini's Google Search grounding).
SEARCH_KINDS = frozenset({"anthropic", "google"})


def _has_search(gw: Gateway, requested: str) -> bool:
    """Whether every deployment of the model has a web search of its own."""
    registry = gw.registry
    deps = registry.models.get(registry.aliases.get(requested, requested)) or []
    return bool(deps) and all(d.kind in SEARCH_KINDS for d in deps)


@contextmanager
def _client_terms() -> Iterator[None]:
    """A field the provider refused, named as the Responses request names it."""
    try:
        yield
    except InvalidRequestError as err:
        if err.param:
            ours = fmt.client_param(err.param)
            if ours != err.param:
                err.message = err.message.replace(f"'{err.param}'", f"'{ours}'")
                err.args = (err.message,)
                err.param = ours
        raise


def _bridged(
    gw: Gateway,
    store: ResponseStore,
    ctx: RequestContext,
    body: dict[str, Any],
    previous: Stored | None,
) -> Response:
    """Through the canonical chat format and the chat pipeline."""
    history = previous.conversation if previous is not None else None
    search = _has_search(gw, body["model"])
    bridged = fmt.to_canonical(body, history, search=search)
    _omitted(gw, ctx, body, bridged.omitted)
    response_id = fmt.new_id("resp")
    created = int(gw.clock())
    saver = _saver(gw, store, ctx, body, previous)
    if body.get("stream"):
        chat = {**bridged.chat, "stream_options": {"include_usage": True}}
        with _client_terms():
            chunks = gw.chat_stream(ctx, chat)
        translator = fmt.EventTranslator(body, bridged, response_id, created)
        encoder = fmt.ResponsesEncoder(translator, on_done=saver)
        return sse_stream(gw, ctx, chunks, encoder)
    with _client_terms():
        answer = gw.chat(
            ctx,
            bridged.chat,
            render=lambda r: fmt.from_canonical(r, body, bridged, response_id, created),
        )
    saver(answer)
    return json_response(answer, headers=answer_headers(ctx))


def _native(
    gw: Gateway,
    store: ResponseStore,
    ctx: RequestContext,
    body: dict[str, Any],
    previous: Stored | None,
) -> Response:
    """The body goes upstream as sent; the answer and events come back as they
    came. A follow-up goes to the provider that stored its predecessor; one
    whose predecessor the gateway keeps sends the conversation as input."""
    upstream = body
    if previous is not None and previous.provider is not None:
        ctx.state[PINNED_PROVIDER] = previous.provider
    elif previous is not None:
        upstream = {k: v for k, v in body.items() if k != "previous_response_id"}
        upstream["input"] = fmt.portable_items(previous.conversation) + (
            fmt.input_items(body.get("input"))
        )
    saver = _saver(gw, store, ctx, body, previous, native=True)
    if body.get("stream"):
        events = gw.responses_native_stream(ctx, upstream, on_done=saver)
        return sse_stream(gw, ctx, events, native.NativeEncoder())
    answer = gw.responses_native(ctx, upstream)
    saver(answer)
    return json_response(answer, headers=answer_headers(ctx))


def _saver(
    gw: Gateway,
    store: ResponseStore,
    ctx: RequestContext,
    body: dict[str, Any],
    previous: Stored | None,
    *,
    native: bool = False,
) -> Any:
    """What keeps a finished Response (nothing with store: false)."""

    def save(response: dict[str, Any]) -> None:
        if body.get("store") is False or response.get("status") == "failed":
            return
        try:
            _put(response)
        except GatewayError as exc:
            # The answer is already the client's: the follow-up will say 404.
            log.error("responses: could not store %s: %s", response["id"], exc)

    def _put(response: dict[str, Any]) -> None:
        inputs = fmt.input_items(body.get("input"))
        with_ids = [fmt.item_with_id(item) for item in inputs]
        before = previous.conversation if previous is not None else []
        now = gw.clock()
        store.put(
            Stored(
                id=response["id"],
                key=key_name(ctx.principal),
                created_at=now,
                expires_at=now + gw.config.responses.ttl,
                response=response,
                input_items=with_ids,
                conversation=before + with_ids + list(response.get("output") or []),
                # The provider keeps it too: a follow-up goes there.
                provider=ctx.provider if native else None,
            )
        )

    return save
