"""Run-time provider specs, pure parts: masking and PATCH semantics."""

from __future__ import annotations

import pytest

from crabllm_sync.catalog.spec import mask, parse_spec, patched, public
from crabllm_sync.errors import InvalidRequestError


def test_a_secret_is_masked_to_its_prefix_and_last_four():
    assert mask("sk-proj-abcdefghijklmnop1234") == "sk-...1234"
    # Short secrets show nothing of themselves; references are not secrets.
    assert mask("short-secret") == "..."
    assert mask("${OPENAI_API_KEY}") == "${OPENAI_API_KEY}"
    assert mask("") == "" and mask(None) is None


def test_public_never_holds_a_secret_field_verbatim():
    spec = {
        "kind": "bedrock",
        "models": ["m"],
        "access_key": "AKIAABCDEFGHIJKLMNOP",
        "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "api_key": "sk-0123456789abcdefghij",
    }
    shown = public("b", spec, "api")
    for field in ("access_key", "secret_key", "api_key"):
        assert shown[field] != spec[field] and shown[field].startswith(spec[field][:3])
        assert shown[field].endswith(spec[field][-4:])
    assert shown["weight"] == 1.0  # defaults are filled in


def test_patch_null_resets_and_name_cannot_change():
    assert patched({"weight": 2, "models": ["a"]}, {"weight": None}) == {
        "models": ["a"]
    }
    with pytest.raises(InvalidRequestError, match="cannot be changed"):
        parse_spec({"name": "x"}, partial=True)
    with pytest.raises(InvalidRequestError, match="unknown field"):
        parse_spec({"name": "x", "nope": 1})
    with pytest.raises(InvalidRequestError, match="must be a string"):
        parse_spec({"name": "x", "api_key": 5})
