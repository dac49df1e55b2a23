"""A model with deployments of different kinds: a deployment whose provider cannot
honour the request (UnsupportedError, before any network call) hands it on to
the next one; a 400 only when none can serve it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import make_config, openai_provider, sdk_for_app
from tests.fakes import anthropic as fake_ant
from tests.fakes import openai as fake_oai
from tests.upstream import Upstream

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def oai() -> Iterator[Upstream]:
    up = fake_oai.make_upstream().start()
    yield up
    up.stop()


@pytest.fixture
def ant() -> Iterator[Upstream]:
    up = fake_ant.make_upstream().start()
    yield up
    up.stop()


def anthropic_provider(up: Upstream, models: list[str], **over: Any) -> dict:
    return {
        "kind": "anthropic",
        "base_url": f"{up.url}/v1",
        "api_key": "sk-ant-upstream",
        "models": models,
        "max_retries": 2,
        "timeout": 5,
        **over,
    }


@pytest.fixture
def sdk(oai, ant, app_factory) -> openai.OpenAI:
    # Weight 0 is never picked first while another deployment has weight, so
    # the anthropic deployment is always tried first for "m".
    config = make_config(
        {
            "providers": {
                "an": anthropic_provider(ant, ["m", "claude-only"], weight=1),
                "an2": anthropic_provider(ant, ["claude-only"], weight=1),
                "oa": openai_provider(oai, ["m"], weight=0),
            },
            "routing": {"failure_threshold": 1},
        }
    )
    return sdk_for_app(app_factory(config))


def test_a_refused_parameter_lands_on_the_deployment_that_can_serve_it(sdk, oai, ant):
    answer = sdk.chat.completions.create(model="m", messages=USER, n=2)
    assert answer.choices[0].message.content  # the openai fake answered
    assert len(oai.requests) == 1 and oai.requests[0].json["n"] == 2
    assert ant.requests == []  # refused before any network call
    # The refusal is not a failure: with failure_threshold = 1 a counted failure
    # would have opened an's breaker, and plain requests would skip it.
    plain = sdk.chat.completions.create(model="m", messages=USER)
    assert plain.choices[0].message.content.startswith("echo: ")
    assert len(ant.requests) == 1 and len(oai.requests) == 1


def test_every_deployment_refusing_is_the_first_refusal_as_a_400(sdk, ant):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude-only", messages=USER, n=2)
    assert exc.value.status_code == 400
    err = exc.value.body
    assert err["code"] == "unsupported_parameter"
    assert "'n'" in err["message"]
    assert ant.requests == []
