"""Google's Gemini API (generateContent and friends): translated to and from
the canonical chat format, or taken as-is by a deployment whose adapter
declares the format native (kind `google`).

request.py: Gemini request -> chat; response.py: chat answer -> Gemini, usage,
errors in Google's shape; stream.py: framing (SSE or JSON array), the native
observer, chat chunks -> Gemini events; extras.py: countTokens, embeddings,
models.
"""

from crabllm_sync.formats.gemini.request import FORMAT, to_canonical
from crabllm_sync.formats.gemini.response import (
    from_canonical,
    native_usage,
    to_google,
)
from crabllm_sync.formats.gemini.stream import (
    NativeEncoder,
    NativeObserver,
    TranslatedEncoder,
)

__all__ = [
    "FORMAT",
    "NativeEncoder",
    "NativeObserver",
    "TranslatedEncoder",
    "from_canonical",
    "native_usage",
    "to_canonical",
    "to_google",
]
