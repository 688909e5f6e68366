"""Hypothesis settings for the fuzzers: bounded, so the whole folder stays within about two minutes in CI.

RTFD_FUZZ_EXAMPLES raises the number of examples per fuzzer for a longer local hunt. No example database:
the tests write nothing into the working directory (a failure prints its minimal example instead).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "rtfd",
    max_examples=int(os.environ.get("RTFD_FUZZ_EXAMPLES", "100")),
    deadline=None,  # speed belongs to benchmarks; a hang is caught by pytest-timeout
    database=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("rtfd")
