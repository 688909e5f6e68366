"""Hypothesis settings for the fuzzers: bounded, so the whole folder stays within about two minutes in CI.

Derandomized by default: the same examples every run, so CI fails only on a change, never on a lucky draw.
A hunt for new inputs is opt-in: RTFD_FUZZ_RANDOM=1 draws fresh examples, RTFD_FUZZ_EXAMPLES raises how many.
No example database: the tests write nothing into the working directory (a failure prints its minimal example).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "rtfd",
    max_examples=int(os.environ.get("RTFD_FUZZ_EXAMPLES", "100")),
    deadline=None,  # speed belongs to benchmarks; a hang is caught by pytest-timeout
    database=None,
    derandomize=os.environ.get("RTFD_FUZZ_RANDOM", "0") != "1",
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("rtfd")
