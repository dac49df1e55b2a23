"""Keys and auth with a controlled clock: secrets, globs, cache, revocation bound."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from crabllm_sync.auth import (
    CACHE_TTL,
    NEGATIVE_TTL,
    STALE_IF_ERROR,
    Authenticator,
    Principal,
    allows,
    bearer,
    check_model,
)
from crabllm_sync.errors import (
    InvalidApiKeyError,
    InvalidRequestError,
    ModelNotAllowedError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from crabllm_sync.keys.model import (
    NewKey,
    check_name,
    display_prefix,
    generate_key,
    hash_key,
    parse_body,
)
from crabllm_sync.keys.store import KeyStore
from tests.conftest import make_config

ADMIN = "admin-token-" + "x" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(KeyStore):
    """The in-process key store, counting lookups that reach it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(None, clock=lambda: 1_700_000_000.0 + clock.now)
        self.finds = 0

    def find(self, digest):  # noqa: ANN001, ANN201
        self.finds += 1
        return super().find(digest)


def _auth(config_keys=(), admin: str | None = ADMIN):
    clock = Clock()
    store = CountingStore(clock)
    config = make_config(
        {"admin_token": admin, "keys": list(config_keys)} if admin else {}
    )
    store.start(config.keys)
    auth = Authenticator(config, store, clock=clock, wall=store.clock)
    return auth, store, clock


def _h(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_generated_keys_are_random_prefixed_and_hashed():
    a, b = generate_key(), generate_key()
    assert a != b and a.startswith("sk-crabllm-") and len(a) >= 50
    assert hash_key(a) == hashlib.sha256(a.encode()).hexdigest()
    assert display_prefix(a) == a[:14]
    # A short config secret never shows more than a third of itself.
    assert display_prefix("sk-12345678") == "sk-"


@pytest.mark.parametrize(
    ("patterns", "model", "allowed"),
    [
        (["*"], "anything", True),
        (["gpt-4o"], "gpt-4o", True),
        (["gpt-4o"], "gpt-4o-mini", False),
        (["gpt-4o*"], "gpt-4o-mini", True),
        (["gpt-4o*"], "gpt-4", False),
        (["claude-*", "mock"], "mock", True),
        (["claude-*", "mock"], "mockery", False),
        ([], "mock", False),
    ],
)
def test_model_globs(patterns, model, allowed):
    assert allows(Principal(name="k", models=tuple(patterns)), model) is allowed


def test_check_model_raises_403():
    with pytest.raises(ModelNotAllowedError) as info:
        check_model(Principal(name="k", models=("a*",)), "b", "b-resolved")
    assert info.value.http_status == 403 and info.value.code == "model_not_allowed"


@pytest.mark.parametrize(
    ("headers", "x_api_key", "expected"),
    [
        ({"Authorization": "Bearer abc"}, False, "abc"),
        ({"Authorization": "bearer   abc  "}, False, "abc"),
        ({"Authorization": "Basic abc"}, False, None),
        ({"Authorization": "Bearer "}, False, None),
        ({"x-api-key": "abc"}, False, None),
        ({"x-api-key": "abc"}, True, "abc"),
        ({}, True, None),
    ],
)
def test_bearer(headers, x_api_key, expected):
    assert bearer(headers, allow_x_api_key=x_api_key) == expected


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../etc", "a/b", "-rf", "x" * 129, "a b", "ü"]
)
def test_bad_key_names_are_refused(name):
    with pytest.raises(InvalidRequestError):
        check_name(name)


def test_principal_carries_the_keys_limits():
    auth, store, _ = _auth()
    body = {
        "name": "lim",
        "models": ["mock"],
        "rate_limit": {"requests_per_minute": 5, "tokens_per_minute": 900},
        "budget": 2.5,
        "max_parallel_requests": 3,
        "metadata": {"team": "x"},
    }
    _, secret = store.create(parse_body(NewKey, body))
    p = auth.authenticate(_h(secret))
    assert (p.name, p.models, p.is_admin) == ("lim", ("mock",), False)
    assert (p.requests_per_minute, p.tokens_per_minute) == (5, 900)
    assert (p.budget, p.max_parallel_requests) == (2.5, 3)
    assert p.limits["requests_per_minute"] == 5 and p.metadata == {"team": "x"}


def test_lookups_are_cached_and_a_revocation_lands_within_the_ttl():
    auth, store, clock = _auth()
    _, secret = store.create(NewKey(name="k"))
    auth.authenticate(_h(secret))
    auth.authenticate(_h(secret))
    assert store.finds == 1  # the second request never reached the store
    store.revoke("k")  # e.g. through another worker: this cache still trusts it
    clock.now += CACHE_TTL / 2
    assert auth.authenticate(_h(secret)).name == "k"
    clock.now += CACHE_TTL / 2 + 0.001
    with pytest.raises(InvalidApiKeyError, match="revoked"):
        auth.authenticate(_h(secret))
    assert CACHE_TTL <= 5  # the documented bound


def test_a_key_store_outage_is_bridged_by_the_last_lookup_for_a_bounded_time():
    auth, store, clock = _auth()
    _, secret = store.create(NewKey(name="k"))
    auth.authenticate(_h(secret))
    down = ServiceUnavailableError("database unavailable")

    def unreachable(digest):  # noqa: ANN001, ANN202
        raise down

    store.find = unreachable  # the database went away
    clock.now += CACHE_TTL + STALE_IF_ERROR - 0.001
    assert auth.authenticate(_h(secret)).name == "k"  # before: a 503
    clock.now += 0.002
    with pytest.raises(ServiceUnavailableError):
        auth.authenticate(_h(secret))
    with pytest.raises(ServiceUnavailableError):  # never seen: no stale copy
        auth.authenticate(_h("sk-never-looked-up"))
    # A revocation committed just before the outage lands within 5 s.
    assert CACHE_TTL + STALE_IF_ERROR <= 5


def test_unknown_keys_are_remembered_briefly_then_looked_up_again():
    auth, store, clock = _auth([{"name": "cfg", "key": "sk-config-secret"}])
    with pytest.raises(InvalidApiKeyError):
        auth.authenticate(_h("sk-not-yet"))
    _, secret = store.create(NewKey(name="later"))
    with pytest.raises(InvalidApiKeyError):
        auth.authenticate(_h("sk-not-yet"))
    assert store.finds == 1
    clock.now += NEGATIVE_TTL + 0.001
    assert auth.authenticate(_h(secret)).name == "later"


def test_missing_unknown_revoked_expired_are_401():
    auth, store, clock = _auth([{"name": "cfg", "key": "sk-config-secret"}])
    with pytest.raises(InvalidApiKeyError, match="Missing"):
        auth.authenticate({})
    with pytest.raises(InvalidApiKeyError, match="Incorrect"):
        auth.authenticate(_h("sk-wrong"))
    soon = datetime.fromtimestamp(store.clock() + 60, UTC)
    _, secret = store.create(NewKey(name="short", expires_at=soon))
    assert auth.authenticate(_h(secret)).name == "short"
    clock.now += 60  # the expiry is checked on every request, cache or not
    with pytest.raises(InvalidApiKeyError, match="expired"):
        auth.authenticate(_h(secret))
    assert auth.authenticate(_h("sk-config-secret")).name == "cfg"


def test_auth_is_off_without_keys_and_turns_on_when_one_is_created():
    auth, store, clock = _auth(admin=None)
    assert not auth.is_enabled
    assert auth.authenticate({}).name is None
    store.create(NewKey(name="first"))
    clock.now += NEGATIVE_TTL + 0.001
    assert auth.is_enabled
    with pytest.raises(InvalidApiKeyError):
        auth.authenticate({})
    store.revoke("first")  # revoking the last key never turns auth off
    clock.now += 100
    with pytest.raises(InvalidApiKeyError):
        auth.authenticate({})


def test_auth_off_is_logged_loudly(caplog):
    auth, _, _ = _auth(admin=None)
    with caplog.at_level("WARNING"):
        auth.log_startup()
    assert "AUTH IS OFF" in caplog.text


def test_the_key_name_admin_is_reserved_for_the_admin_token():
    auth, store, _ = _auth()
    for name in ("admin", "Admin"):
        with pytest.raises(InvalidRequestError, match="reserved"):
            store.create(NewKey.model_construct(name=name))
    with pytest.raises(InvalidRequestError, match="reserved"):
        parse_body(NewKey, {"name": "admin"})
    assert auth.authenticate(_h(ADMIN)).name == "admin"


def test_a_stored_key_named_admin_never_acts_as_the_admin_identity():
    auth, store, _ = _auth()
    # A row written before the name was reserved (straight into the table).
    _, secret = store.create(NewKey(name="old-admin"))
    row = store._table._rows.pop("old-admin")
    store._table.insert({**row, "name": "admin"})
    with pytest.raises(InvalidApiKeyError, match="reserved for the admin token"):
        auth.authenticate(_h(secret))


def test_admin_token_and_plain_keys_on_admin_routes():
    auth, store, _ = _auth()
    _, secret = store.create(NewKey(name="k"))
    assert auth.require_admin(_h(ADMIN)).is_admin
    with pytest.raises(PermissionDeniedError):
        auth.require_admin(_h(secret))
    with pytest.raises(InvalidApiKeyError):
        auth.require_admin(_h("sk-unknown"))
    with pytest.raises(InvalidApiKeyError):
        auth.require_admin({})
    store.revoke("k")
    auth.forget()
    with pytest.raises(InvalidApiKeyError):
        auth.require_admin(_h(secret))


def test_the_cache_stays_bounded(monkeypatch):
    import crabllm_sync.auth as auth_module

    monkeypatch.setattr(auth_module, "CACHE_MAX", 50)
    monkeypatch.setattr(auth_module, "NEGATIVE_MAX", 50)
    auth, store, _ = _auth([{"name": "cfg", "key": "sk-config-secret"}])
    for i in range(200):
        with pytest.raises(InvalidApiKeyError):
            auth.authenticate(_h(f"sk-flood-{i}"))
    assert len(auth._cache) <= 50 and len(auth._misses) <= 50


def test_a_flood_of_bogus_tokens_keeps_valid_keys_cached():
    flood = 10_001  # more distinct tokens than the cache holds
    auth, store, _ = _auth([{"name": "cfg", "key": "sk-config-secret"}])
    assert auth.authenticate(_h("sk-config-secret")).name == "cfg"
    for i in range(flood):
        with pytest.raises(InvalidApiKeyError):
            auth.authenticate(_h(f"sk-flood-{i}"))
    before = store.finds
    assert auth.authenticate(_h("sk-config-secret")).name == "cfg"
    assert store.finds == before  # still cached: the flood never reached it
    # The newest bogus tokens are still remembered, so a repeat is not looked up.
    with pytest.raises(InvalidApiKeyError):
        auth.authenticate(_h(f"sk-flood-{flood - 1}"))
    assert store.finds == before
