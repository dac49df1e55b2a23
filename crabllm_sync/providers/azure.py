"""Azure OpenAI: deployment URLs, api-version and the api-key header.

The body is OpenAI's; everything else is openai.py's Api on this module's target().
"""

from __future__ import annotations

from urllib.parse import quote

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
    return url, _headers(dep)


def _headers(dep: Deployment) -> dict[str, str]:
    """JSON headers with the key in `api-key`, Azure's header."""
    headers = dict(http.JSON_HEADERS)
    if dep.api_key:
        headers["api-key"] = dep.api_key
    return headers


NATIVE_FORMATS = frozenset({"responses"})


def target_v1(dep: Deployment, path: str) -> tuple[str, dict[str, str]]:
    """{base}/openai/v1{path}: Azure's v1 API (the Responses API lives there;
    the deployment is named by the body's model)."""
    return f"{dep.base_url}/openai/v1{path}", _headers(dep)


_API = openai.Api(target)
_API_V1 = openai.Api(target_v1)
chat = _API.chat
chat_stream = _API.chat_stream
responses = _API_V1.responses
responses_stream = _API_V1.responses_stream
embeddings = _API.embeddings
images = _API.images
speech = _API.speech
transcription = _API.transcription
translation = _API.translation
