"""A provider's answer in a shape its API does not have is the provider's
error (502, naming it), not the gateway's (500).

The translating providers (anthropic, google, bedrock) read answers field by
field; a field of the wrong type (`"candidates": 5`) raised TypeError or
AttributeError deep in a translator and reached the client as an internal
error. At the adapter's edge those become one UpstreamError, which routing
treats as any failed answer (the next deployment is tried). The traceback is
logged: a translator bug would show up there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from crabllm_sync.errors import UpstreamError

log = logging.getLogger(__name__)

T = TypeVar("T")

SHAPE_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError)


@contextmanager
def reading(provider: str) -> Iterator[None]:
    """Turn a shape error raised while reading `provider`'s answer into a 502."""
    try:
        yield
    except SHAPE_ERRORS as exc:
        log.warning("%s: an answer the gateway cannot read", provider, exc_info=True)
        raise UpstreamError(
            f"{provider}: answered in a shape the gateway cannot read "
            f"({type(exc).__name__})",
            provider=provider,
            upstream_status=502,
        ) from exc


def read_stream(chunks: Iterator[T], provider: str) -> Iterator[T]:
    """`chunks`, with a shape error while reading them turned into a 502."""
    with reading(provider):
        yield from chunks
