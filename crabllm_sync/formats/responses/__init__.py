"""OpenAI Responses API (`POST /v1/responses`) as a client format.

Bridged models go through the canonical chat format: request.py translates
the request (and names what it left out), items.py the input items (and
what reasoning items carry across turns), answer.py builds the Response
object, events.py turns chat chunks into Responses stream events and
encoder.py frames them as SSE. Models whose adapter declares FORMAT native
take the body as it is: native.py watches and re-frames their events.
"""

from crabllm_sync.formats.responses.answer import (
    from_canonical,
    item_with_id,
    new_id,
    shell,
    usage,
)
from crabllm_sync.formats.responses.encoder import ResponsesEncoder
from crabllm_sync.formats.responses.events import EventTranslator
from crabllm_sync.formats.responses.items import input_items, portable_items
from crabllm_sync.formats.responses.request import Bridged, client_param, to_canonical

FORMAT = "responses"

__all__ = [
    "FORMAT",
    "Bridged",
    "EventTranslator",
    "ResponsesEncoder",
    "client_param",
    "from_canonical",
    "input_items",
    "item_with_id",
    "new_id",
    "portable_items",
    "shell",
    "to_canonical",
    "usage",
]
