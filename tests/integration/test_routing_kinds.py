"""A model with deployments of different kinds: a deployment whose provider cannot
honour the request (UnsupportedError, before any network call) hands it on to
the next one; a 400 only when none can serve it.
"""

from __future__ import annotations

import openai
import pytest

from tests.conftest import anthropic_provider, make_config, openai_provider, sdk_for_app

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def sdk(upstream, anthropic_upstream, app_factory) -> openai.OpenAI:
    # Weight 0 is never picked first while another deployment has weight, so
    # the anthropic deployment is always tried first for "m".
    config = make_config(
        {
            "providers": {
                "an": anthropic_provider(
                    anthropic_upstream, ["m", "claude-only"], weight=1, max_retries=2
                ),
                "an2": anthropic_provider(
                    anthropic_upstream, ["claude-only"], weight=1, max_retries=2
                ),
                "oa": openai_provider(upstream, ["m"], weight=0),
            },
            "routing": {"failure_threshold": 1},
        }
    )
    return sdk_for_app(app_factory(config))


def test_a_refused_parameter_lands_on_the_deployment_that_can_serve_it(
    sdk, upstream, anthropic_upstream
):
    answer = sdk.chat.completions.create(model="m", messages=USER, n=2)
    assert answer.choices[0].message.content  # the openai fake answered
    assert len(upstream.requests) == 1 and upstream.requests[0].json["n"] == 2
    assert anthropic_upstream.requests == []  # refused before any network call
    # The refusal is not a failure: with failure_threshold = 1 a counted failure
    # would have opened an's breaker, and plain requests would skip it.
    plain = sdk.chat.completions.create(model="m", messages=USER)
    assert plain.choices[0].message.content.startswith("echo: ")
    assert len(anthropic_upstream.requests) == 1 and len(upstream.requests) == 1


def test_every_deployment_refusing_is_the_first_refusal_as_a_400(
    sdk, anthropic_upstream
):
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="claude-only", messages=USER, n=2)
    assert exc.value.status_code == 400
    err = exc.value.body
    assert err["code"] == "unsupported_parameter"
    assert "'n'" in err["message"]
    assert anthropic_upstream.requests == []
