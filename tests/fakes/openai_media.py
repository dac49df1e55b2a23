"""OpenAI's images and audio endpoints (also under Azure's deployment paths).

Shapes follow OpenAI's API reference: images answer {created, data, usage},
speech answers raw audio bytes, transcriptions answer {text, usage} or text.
"""

from __future__ import annotations

import io
from typing import Any

from werkzeug.test import create_environ
from werkzeug.wrappers import Request

from tests.upstream import Recorded, Reply, Upstream

IMAGES_PATH = r"/images/generations$"
SPEECH_PATH = r"/audio/speech$"
TRANSCRIBE_PATH = r"/audio/(transcriptions|translations)$"

# Speech: distinct bytes per piece so reordering or loss shows.
SPEECH_PIECES = [bytes([i]) * 4096 + f"piece-{i}".encode() for i in range(24)]


def images_response(n: int) -> dict[str, Any]:
    return {
        "created": 1713833628,
        "data": [
            {"b64_json": f"aW1hZ2Ut{i}", "revised_prompt": "a cat"} for i in range(n)
        ],
        "usage": {
            "total_tokens": 100,
            "input_tokens": 50,
            "output_tokens": 50,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
        },
    }


def images_handler(rec: Recorded) -> Reply:
    return Reply(json=images_response(rec.json.get("n") or 1))


def speech_handler(rec: Recorded) -> Reply:
    return Reply(chunks=iter(SPEECH_PIECES), content_type="audio/mpeg")


def parse_form(rec: Recorded) -> Request:
    """The recorded multipart body, parsed the way a server would."""
    environ = create_environ(
        method="POST",
        input_stream=io.BytesIO(rec.body),
        content_type=rec.headers["content-type"],
        content_length=len(rec.body),
    )
    return Request(environ)


def transcribe_handler(rec: Recorded) -> Reply:
    form = parse_form(rec)
    file = form.files.get("file")
    if file is None or not form.form.get("model"):
        return Reply(status=400, json={"error": {"message": "file and model required"}})
    size = len(file.read())
    text = f"heard {size} bytes"
    if form.form.get("response_format") == "text":
        return Reply(body=text.encode(), content_type="text/plain; charset=utf-8")
    return Reply(json={"text": text, "usage": {"type": "duration", "seconds": 1.5}})


def make_upstream() -> Upstream:
    return Upstream(
        {
            IMAGES_PATH: images_handler,
            SPEECH_PATH: speech_handler,
            TRANSCRIBE_PATH: transcribe_handler,
        }
    )
