"""The redis storage URL forms: one server, a cluster, a primary behind Sentinel."""

from __future__ import annotations

import pytest

from crabllm_sync.storage.redis_url import RedisTarget, parse_redis_url


@pytest.mark.parametrize(
    "url, tls",
    [
        ("redis://127.0.0.1:6379/0", False),
        ("rediss://:pw@cache.internal:6380/2", True),
        ("unix:///run/redis.sock?db=1", False),
    ],
)
def test_a_single_server_url_is_passed_on_as_it_is(url, tls):
    assert parse_redis_url(url) == RedisTarget("single", url, tls=tls)


def test_a_cluster_url_lists_its_seed_nodes_with_the_default_port():
    url = "rediss+cluster://app:s%40cret@a.internal:7000,b.internal,[::1]:7002"
    t = parse_redis_url(url)
    assert t.mode == "cluster" and t.tls
    assert t.nodes == (("a.internal", 7000), ("b.internal", 6379), ("::1", 7002))
    assert (t.username, t.password) == ("app", "s@cret")


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db():
    url = "redis+sentinel://:pw@s1:26380,s2/mymaster/3?sentinel_password=sp"
    t = parse_redis_url(url)
    assert t.mode == "sentinel" and not t.tls
    assert t.nodes == (("s1", 26380), ("s2", 26379))
    assert (t.service, t.db) == ("mymaster", 3)
    assert (t.username, t.password, t.sentinel_password) == (None, "pw", "sp")
    assert parse_redis_url("redis+sentinel://s1/main").db == 0


@pytest.mark.parametrize(
    "url, says",
    [
        ("memcached://x", "must start with one of"),
        ("127.0.0.1:6379", "must start with one of"),
        ("redis+cluster:///", "names no host"),
        ("redis+cluster://a:7000/1", "takes no database"),
        ("redis+sentinel://s1:26379", "/service"),
        ("redis+sentinel://s1/m/x", "database 'x'"),
        ("redis+sentinel://s1:port/m", "port 'port'"),
    ],
)
def test_a_bad_url_is_refused_naming_the_fault(url, says):
    with pytest.raises(ValueError, match=says):
        parse_redis_url(url)


def test_a_bad_storage_url_is_a_config_error_at_start():
    from crabllm_sync.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="storage.*/service"):
        parse_config({"storage": {"kind": "redis", "path": "redis+sentinel://s1"}}, {})
    ok = {"storage": {"kind": "redis", "path": "redis+cluster://a:7000,b:7001"}}
    assert parse_config(ok, {}).storage.failover_wait == 5
