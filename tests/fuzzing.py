"""Hypothesis profiles, chosen by $HYPOTHESIS_PROFILE (tests/conftest.py loads one).

`ci` (the default, `make test`) runs a sample of every property test: a fifth
of the examples each one asks for, at least MIN_EXAMPLES. `fuzz` (`make fuzz`)
runs each test's full number. A test says its full number with
`@settings(max_examples=examples(300))`; the profile scales it, so one figure
in the test serves both runs. Neither profile has a deadline: on a busy
machine an example's run time says nothing about the code.
"""

from __future__ import annotations

import os

from hypothesis import settings

FULL = 100  # hypothesis' own default: `fuzz` runs the numbers as written
MIN_EXAMPLES = 5

settings.register_profile("ci", max_examples=FULL // 5, deadline=None, print_blob=True)
settings.register_profile("fuzz", max_examples=FULL, deadline=None, print_blob=True)


def load() -> str:
    """Load the profile $HYPOTHESIS_PROFILE names (default `ci`); returns its name."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile(name)
    return name


def examples(full: int) -> int:
    """`full` examples under the fuzz profile, the same share of it as the
    loaded profile's max_examples is of FULL otherwise (at least MIN_EXAMPLES)."""
    return max(MIN_EXAMPLES, full * settings.default.max_examples // FULL)
