"""Provider specs, pure parts: request bodies, the merged config, masking.

A spec is what the admin sent, `${VAR}` references unexpanded: stored as is
and expanded (from the worker's environment) each time it is built.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from crabllm_sync import providers
from crabllm_sync.config import Config, ProviderConfig, check_config, expand_env
from crabllm_sync.errors import InvalidRequestError

NAME_MAX = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Write-only fields: never answered or logged, only masked.
SECRET_FIELDS = ("api_key", "access_key", "secret_key")
FIELDS = tuple(ProviderConfig.model_fields)
MASK_SHOWN = 4  # trailing characters of a secret shown in answers
MASK_MIN = 16  # shorter secrets show nothing of themselves


def check_name(name: str) -> str:
    """The name if it is a valid provider name, else InvalidRequestError."""
    if not (0 < len(name) <= NAME_MAX) or not _NAME.match(name):
        raise InvalidRequestError(
            f"invalid provider name: 1-{NAME_MAX} letters, digits or ._-, "
            "starting with a letter or digit",
            param="name",
        )
    return name


def parse_spec(body: Any, *, partial: bool = False) -> dict[str, Any]:
    """The provider fields of a JSON body (POST: `name` too; PATCH: `partial`).

    Only known fields; `null` in a PATCH resets a field to its default.
    """
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    allowed = set(FIELDS) | (set() if partial else {"name"})
    for field in body:
        if field not in allowed:
            what = "cannot be changed" if field == "name" else "unknown field"
            raise InvalidRequestError(f"'{field}': {what}", param=field)
    spec = {k: v for k, v in body.items() if k != "name"}
    for field in SECRET_FIELDS:
        if field in spec and spec[field] is not None:
            if not isinstance(spec[field], str):
                raise InvalidRequestError(f"'{field}': must be a string", param=field)
    if not partial:
        spec = {k: v for k, v in spec.items() if v is not None}
    return spec


def patched(spec: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` with `changes` applied; a None value drops the field (default)."""
    out = dict(spec)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def build(
    name: str, spec: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> ProviderConfig:
    """The provider a spec describes, `${VAR}` expanded; InvalidRequestError
    names the first field that does not validate."""
    expanded = expand_env(dict(spec), os.environ if env is None else env)
    try:
        p = ProviderConfig.model_validate(expanded)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        raise InvalidRequestError(
            f"provider '{name}': '{loc}': {msg}", param=loc
        ) from None
    if not p.models and not providers.is_openai_compatible(p.kind):
        raise InvalidRequestError(
            f"provider '{name}': kind '{p.kind}' needs 'models' (only an "
            "OpenAI-compatible provider lists its upstream's)",
            param="models",
        )
    try:
        providers.adapter_for(p.kind)
    except ImportError as exc:
        raise InvalidRequestError(
            f"provider '{name}': kind '{p.kind}' cannot be served here: {exc}",
            param="kind",
        ) from None
    return p


def merged(
    file_config: Config, runtime: Mapping[str, ProviderConfig]
) -> tuple[Config, list[str]]:
    """The file's config serving its own providers and the runtime ones, and
    the problems (an alias pointing nowhere, a missing base_url) that keep
    it from being served."""
    all_providers = {**runtime, **file_config.providers}  # the file wins a name
    config = file_config.model_copy(update={"providers": all_providers})
    return config, check_config(config)


def mask(value: str | None) -> str | None:
    """A secret as answers show it: `sk-...abcd`; a `${VAR}` reference as is."""
    if not value:
        return value
    if "${" in value:
        return value
    if len(value) < MASK_MIN:
        return "..."
    head = value[:3] if value[:3].isascii() else ""
    return f"{head}...{value[-MASK_SHOWN:]}"


def public(
    name: str, spec: Mapping[str, Any], source: str, **extra: Any
) -> dict[str, Any]:
    """A provider as the admin API answers it: every field, secrets masked."""
    defaults = ProviderConfig().model_dump()
    body: dict[str, Any] = {"object": "provider", "name": name, "source": source}
    for field in FIELDS:
        value = spec.get(field, defaults[field])
        body[field] = mask(value) if field in SECRET_FIELDS else value
    body.update(extra)
    return body
