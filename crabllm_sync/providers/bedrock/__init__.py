"""AWS Bedrock Converse / ConverseStream adapter behind the OpenAI chat API.

Its one transport is a boto3 bedrock-runtime client, whose errors become
UpstreamError here; translation (request, response, stream, embeddings) is pure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions as boto_errors
import urllib3.exceptions
from botocore.config import Config as BotoConfig

from crabllm_sync.errors import (
    InvalidRequestError,
    UpstreamError,
    UpstreamReadTimeoutError,
    UpstreamTimeoutError,
)
from crabllm_sync.providers import http
from crabllm_sync.providers.bedrock.codes import _coded_error, stream_error
from crabllm_sync.providers.bedrock.embeddings import (
    TOKEN_COUNT_HEADER,
    translate_embedding_request,
    translate_embedding_response,
)
from crabllm_sync.providers.bedrock.messages import PROVIDER
from crabllm_sync.providers.bedrock.messages import _tool_use_id as _tool_use_id
from crabllm_sync.providers.bedrock.request import translate_request
from crabllm_sync.providers.bedrock.response import (
    STOP_REASONS,
    _completion_id,
    map_stop_reason,
    map_usage,
    translate_response,
)
from crabllm_sync.providers.bedrock.stream import ChunkTranslator
from crabllm_sync.providers.shape import reading
from crabllm_sync.routing import Deployment

__all__ = [
    "BASE_URL",
    "DEFAULT_REGION",
    "PROVIDER",
    "STOP_REASONS",
    "ChunkTranslator",
    "chat",
    "chat_stream",
    "embeddings",
    "make_session",
    "map_stop_reason",
    "map_usage",
    "stream_error",
    "translate_embedding_request",
    "translate_embedding_response",
    "translate_request",
    "translate_response",
]


# None: an unset base_url means boto3's own regional endpoint.
BASE_URL = None

DEFAULT_REGION = "us-east-1"


_READ_TIMEOUTS = (boto_errors.ReadTimeoutError, urllib3.exceptions.ReadTimeoutError)
_TIMEOUTS = (boto_errors.ConnectTimeoutError, urllib3.exceptions.TimeoutError)


def _translate_error(dep: Deployment, exc: Exception) -> UpstreamError:
    """botocore / urllib3 exceptions -> the gateway's upstream errors."""
    name = dep.provider
    if isinstance(exc, boto_errors.ClientError):
        err = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        headers = meta.get("HTTPHeaders") or {}
        return _coded_error(
            name,
            str(err.get("Code") or ""),
            str(err.get("Message") or "no message"),
            meta.get("HTTPStatusCode"),
            http.parse_retry_after(headers.get("retry-after")),
        )
    if isinstance(
        exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError
    ):
        return UpstreamError(
            f"{name}: authentication with the provider failed: {exc}",
            provider=name,
            upstream_status=403,
        )
    if isinstance(exc, _READ_TIMEOUTS):
        # Sent, no answer in time: the model may still be generating.
        return UpstreamReadTimeoutError(
            f"{name}: timed out waiting for the answer", provider=name
        )
    if isinstance(exc, _TIMEOUTS):
        return UpstreamTimeoutError(f"{name}: timed out connecting", provider=name)
    return UpstreamError(
        f"{name}: connection failed: {type(exc).__name__}", provider=name
    )


_TRANSPORT_ERRORS = (
    boto_errors.ClientError,
    boto_errors.BotoCoreError,
    urllib3.exceptions.HTTPError,
    OSError,
)


def _call(dep: Deployment, fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return fn(**kwargs)
    except boto_errors.ParamValidationError as exc:
        # botocore checked our translation against its service model.
        raise InvalidRequestError(f"{dep.provider}: {exc}") from None
    except _TRANSPORT_ERRORS as exc:
        raise _translate_error(dep, exc) from exc


def _stream(
    dep: Deployment, events: Any, translator: ChunkTranslator
) -> Iterator[dict[str, Any]]:
    try:
        for event in events:
            # Only the translation: botocore's own errors are mapped below.
            with reading(dep.provider):
                chunks = list(translator.feed(event))
            yield from chunks
    except _TRANSPORT_ERRORS as exc:
        raise _translate_error(dep, exc) from exc
    finally:
        events.close()


def make_session(dep: Deployment) -> Any:
    """A boto3 bedrock-runtime client for one provider (pooled, no retries)."""
    if bool(dep.access_key) != bool(dep.secret_key):
        raise UpstreamError(
            f"{dep.provider}: authentication with the provider failed: set both "
            "access_key and secret_key, or neither (standard AWS credentials)",
            provider=dep.provider,
            upstream_status=403,
        )
    session = boto3.session.Session(
        aws_access_key_id=dep.access_key or None,
        aws_secret_access_key=dep.secret_key or None,
        region_name=dep.region or DEFAULT_REGION,
    )
    connect, read = http.timeouts(dep.timeout)
    config = BotoConfig(
        connect_timeout=connect,
        read_timeout=read,
        # routing.py holds the only retry policy. botocore's `max_attempts`
        # counts retries (1 would mean two calls); total_max_attempts is calls.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=http.POOL_SIZE,
        tcp_keepalive=True,
    )
    return session.client(
        "bedrock-runtime", endpoint_url=dep.base_url or None, config=config
    )


def chat(dep: Deployment, session: Any, body: dict[str, Any]) -> dict[str, Any]:
    """One Converse call, answered as an OpenAI chat.completion."""
    kwargs = translate_request({**body, "model": dep.model})
    response = _call(dep, session.converse, kwargs)
    with reading(dep.provider):
        return translate_response(response, model=dep.model, created=int(time.time()))


def chat_stream(
    dep: Deployment, session: Any, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """One ConverseStream call; its events as OpenAI chunks.

    The call is made (and its HTTP errors raised) before this returns; errors
    inside the event stream raise from the iterator.
    """
    kwargs = translate_request({**body, "model": dep.model})
    response = _call(dep, session.converse_stream, kwargs)
    request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
    translator = ChunkTranslator(
        model=dep.model,
        created=int(time.time()),
        id=_completion_id(request_id, kwargs["messages"]),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )
    return _stream(dep, response["stream"], translator)


def embeddings(dep: Deployment, session: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Titan / Cohere embeddings through InvokeModel, answered in OpenAI's shape."""
    body = {**body, "model": dep.model}
    answers = []
    for kwargs in translate_embedding_request(body):
        response = _call(dep, session.invoke_model, kwargs)
        headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        count = headers.get(TOKEN_COUNT_HEADER)
        try:
            raw = response["body"].read()
        except _TRANSPORT_ERRORS as exc:
            raise _translate_error(dep, exc) from exc
        try:
            answer = json.loads(raw)
        except ValueError:
            raise UpstreamError(
                f"{dep.provider}: answered with invalid JSON",
                provider=dep.provider,
                upstream_status=502,
            ) from None
        answers.append((answer, int(count) if count and count.isdigit() else None))
    return translate_embedding_response(answers, body)
