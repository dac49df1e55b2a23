"""The `[storage] path` URL of redis storage, parsed into one target (pure).

Three deployments, told apart by the scheme:

- `redis://[user:password@]host:port/db` (`rediss://` TLS, `unix://`): one
  server, passed to redis-py's `Redis.from_url` as it is;
- `redis+cluster://[user:password@]host:port,host:port,...` (`rediss+cluster`):
  a Redis Cluster; the nodes listed are where the slot map is first read;
- `redis+sentinel://[user:password@]host:port,host:port,.../service[/db]`
  (`rediss+sentinel`): the primary named `service`, found through the
  sentinels listed, and found again after a failover. `user:password` is the
  data nodes'; `?sentinel_password=...` is the sentinels' own, if they have one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote

Mode = Literal["single", "cluster", "sentinel"]

CLUSTER_PORT = 6379
SENTINEL_PORT = 26379

_SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}


@dataclass(frozen=True)
class RedisTarget:
    mode: Mode
    url: str  # as configured (single: what Redis.from_url takes)
    nodes: tuple[tuple[str, int], ...] = ()  # cluster seeds, or the sentinels
    service: str = ""  # sentinel: the monitored primary's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """The target of `url`; ValueError naming what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ValueError(f"redis storage URL must start with one of {known}")
    mode, tls = _SCHEMES[scheme.lower()]
    if mode == "single":
        return RedisTarget("single", url, tls=tls)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    username, password, hosts = _userinfo(netloc)
    default_port = CLUSTER_PORT if mode == "cluster" else SENTINEL_PORT
    nodes = tuple(_host_port(h, default_port) for h in hosts.split(",") if h)
    if not nodes:
        raise ValueError(f"{scheme}:// URL names no host:port")
    params = parse_qs(query)
    sentinel_password = (params.get("sentinel_password") or [None])[0]
    parts = [p for p in path.split("/") if p]
    if mode == "cluster":
        # A cluster has database 0 only.
        if parts not in ([], ["0"]):
            raise ValueError("redis+cluster:// takes no database (a cluster has db 0)")
        return RedisTarget(
            "cluster", url, nodes, username=username, password=password, tls=tls
        )
    if not parts or len(parts) > 2:
        raise ValueError(
            "redis+sentinel:// URL must end in /service or /service/db "
            "(the primary's name as the sentinels know it)"
        )
    db = _int(parts[1], "database") if len(parts) == 2 else 0
    return RedisTarget(
        "sentinel",
        url,
        nodes,
        service=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
        tls=tls,
    )


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    if "@" not in netloc:
        return None, None, netloc
    info, _, hosts = netloc.rpartition("@")
    user, colon, password = info.partition(":")
    return (
        unquote(user) or None,
        unquote(password) if colon else None,
        hosts,
    )


def _host_port(text: str, default: int) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, tail = text[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"redis URL: no host in {text!r}")
    return host, _int(port, "port") if port else default


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"redis URL: {what} {text!r} is not a number") from None
