"""Provider packages: adapters load by kind, and bedrock's boto3 only when used."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

# Loads every adapter but bedrock the way the gateway does (base_urls by kind),
# checks boto3 stayed out, then loads bedrock and checks it came in: the second
# check shows the first one can fail.
SCRIPT = """
import sys
from crabllm_sync import providers
urls = providers.base_urls(["openai", "ollama", "azure", "anthropic", "google", "mock"])
assert urls["anthropic"] == "https://api.anthropic.com/v1", urls
assert urls["google"].startswith("https://generativelanguage.googleapis.com/"), urls
for kind in ("anthropic", "google", "mock"):
    providers.adapter_for(kind).chat
assert "boto3" not in sys.modules, "boto3 was imported for an unused bedrock kind"
assert providers.base_urls(["bedrock"]) == {"bedrock": None}
assert "boto3" in sys.modules, "the bedrock adapter did not load"
"""


def test_an_unused_bedrock_kind_does_not_import_boto3():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_provider_packages_keep_their_public_names():
    from crabllm_sync.providers import anthropic, bedrock, google

    for module in (anthropic, bedrock, google):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
        for name in ("BASE_URL", "chat", "chat_stream", "translate_request"):
            assert name in module.__all__, f"{module.__name__}.{name}"
    assert callable(anthropic.messages_stream) and callable(bedrock.make_session)
    assert callable(google.embeddings) and callable(bedrock.embeddings)
