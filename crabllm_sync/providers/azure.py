"""Azure OpenAI: deployment URLs, api-version and the api-key header.

The body is OpenAI's; everything else is openai.py with this module's target().
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from crabllm_sync.multipart import Upload
from crabllm_sync.providers import http, openai
from crabllm_sync.routing import Deployment

BASE_URL = None  # the resource origin is required
API_VERSION = "2024-10-21"


def target(dep: Deployment, path: str) -> tuple[str, dict[str, str]]:
    """{base}/openai/deployments/{model}{path}?api-version=..., key in api-key."""
    version = dep.api_version or API_VERSION
    url = (
        f"{dep.base_url}/openai/deployments/{quote(dep.model, safe='')}{path}"
        f"?api-version={quote(version, safe='')}"
    )
    headers = dict(http.JSON_HEADERS)
    if dep.api_key:
        headers["api-key"] = dep.api_key
    return url, headers


NATIVE_FORMATS = frozenset({"responses"})


def target_v1(dep: Deployment, path: str) -> tuple[str, dict[str, str]]:
    """{base}/openai/v1{path}: Azure's v1 API (the Responses API lives there;
    the deployment is named by the body's model)."""
    headers = dict(http.JSON_HEADERS)
    if dep.api_key:
        headers["api-key"] = dep.api_key
    return f"{dep.base_url}/openai/v1{path}", headers


def responses(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    return openai.responses(dep, session, body, target=target_v1)


def responses_stream(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> Iterator[Any]:
    return openai.responses_stream(dep, session, body, target=target_v1)


def chat(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    return openai.chat(dep, session, body, target=target)


def chat_stream(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    return openai.chat_stream(dep, session, body, target=target)


def embeddings(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    return openai.embeddings(dep, session, body, target=target)


def images(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    return openai.images(dep, session, body, target=target)


def speech(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> tuple[str, Iterator[bytes]]:
    return openai.speech(dep, session, body, target=target)


def transcription(
    dep: Deployment, session: http.Session, body: dict[str, Any], upload: Upload
) -> tuple[str, bytes]:
    return openai.transcription(dep, session, body, upload, target=target)


def translation(
    dep: Deployment, session: http.Session, body: dict[str, Any], upload: Upload
) -> tuple[str, bytes]:
    return openai.translation(dep, session, body, upload, target=target)
