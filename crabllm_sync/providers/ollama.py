"""Ollama's OpenAI-compatible API: openai.py with a local default base URL."""

from __future__ import annotations

from crabllm_sync.providers.openai import chat, chat_stream, embeddings

BASE_URL = "http://localhost:11434/v1"

__all__ = ["BASE_URL", "chat", "chat_stream", "embeddings"]
