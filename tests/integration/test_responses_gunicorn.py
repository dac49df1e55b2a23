"""Stored Responses under gunicorn (2 gevent workers a server, sqlite): a
follow-up made right after its predecessor's answer, on the same worker
(read from its buffer), another worker or another server sharing the
database (found by waiting for the owner's flush, ~0.1 s), never a 404."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import write_toml
from tests.fakes import anthropic as fake_ant
from tests.upstream import Upstream

KEY = "sk-team-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def ant() -> Upstream:
    up = fake_ant.make_upstream().start()
    yield up
    up.stop()


def config(path: Path, ant: Upstream, db: Path) -> Path:
    return write_toml(
        path,
        f"""
[storage]
kind = "sqlite"
path = "{db}"

[providers.an]
kind = "anthropic"
base_url = "{ant.url}/v1"
api_key = "sk-ant"
models = ["claude-x"]
max_retries = 0

[providers.local]
kind = "mock"
models = ["mock"]

[[keys]]
name = "team"
key = "{KEY}"
models = ["*"]
""",
    )


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def test_follow_ups_on_another_server_find_the_response_at_once(
    ant, gunicorn, tmp_path
):
    db = tmp_path / "gw.db"
    a = client(gunicorn(config(tmp_path / "a.toml", ant, db), workers=2).url)
    b = client(gunicorn(config(tmp_path / "b.toml", ant, db), workers=2).url)

    first = a.responses.create(model="claude-x", input="my name is Ada")
    # At once on B: the record is in A's buffer until its flush.
    assert b.responses.retrieve(first.id).output_text == first.output_text
    items = b.responses.input_items.list(first.id)
    assert [i.content[0].text for i in items.data] == ["my name is Ada"]
    second = b.responses.create(
        model="claude-x", previous_response_id=first.id, input="who am I?"
    )
    assert len(ant.requests[-1].json["messages"]) == 3  # the conversation went on
    # And back: B's answer continued on A at once.
    with a.responses.stream(
        model="claude-x", previous_response_id=second.id, input="again?"
    ) as stream:
        third = stream.get_final_response()
    assert len(ant.requests[-1].json["messages"]) == 5
    for rid in (third.id, first.id):
        gone = b.responses.with_raw_response.delete(rid)
        assert gone.status_code == 200 and gone.http_response.json()["deleted"]
    for c in (a, b):
        for rid in (first.id, third.id):
            with pytest.raises(openai.NotFoundError):
                c.responses.retrieve(rid)
    assert a.responses.retrieve(second.id).id == second.id


def test_follow_ups_on_fresh_connections_to_two_workers(ant, gunicorn, tmp_path):
    srv = gunicorn(config(tmp_path / "a.toml", ant, tmp_path / "gw.db"), workers=2)
    # A new connection a request: each lands on either worker.
    for n in range(8):
        r = httpx.post(
            f"{srv.url}/v1/responses",
            json={"model": "mock", "input": f"turn {n}"},
            headers=AUTH,
        )
        assert r.status_code == 200
        rid = r.json()["id"]
        got = httpx.get(f"{srv.url}/v1/responses/{rid}", headers=AUTH)
        assert got.status_code == 200 and got.json()["id"] == rid
        follow = httpx.post(
            f"{srv.url}/v1/responses",
            json={"model": "mock", "input": "next", "previous_response_id": rid},
            headers=AUTH,
        )
        assert follow.status_code == 200, follow.text
        gone = httpx.delete(f"{srv.url}/v1/responses/{rid}", headers=AUTH)
        assert gone.status_code == 200 and gone.json()["deleted"] is True
