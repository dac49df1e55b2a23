"""crabllm-sync: an LLM API gateway for Flask shops (OpenAI and Anthropic APIs in)."""

__version__ = "0.1.0"
