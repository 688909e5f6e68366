"""Session fixtures: the real native stack (Kafka KRaft 3+1, PostgreSQL, schema registry), started once.

Set RTFD_TEST_EXTERNAL_STACK=1 to run the tests against a stack you already started (its RTFD_* settings),
which makes iterating on one test fast; CI always starts and stops its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from rtfd.config import Settings

TEST_PORT_OFFSET = 100  # beside a developer's own `rtfd up` on the default ports


@pytest.fixture(scope="session")
def stack() -> Settings:
    """Settings pointing at a running native stack with three brokers and no producers."""
    if os.environ.get("RTFD_TEST_EXTERNAL_STACK"):
        yield Settings()
        return
    from rtfd.stack import NativeStack

    state = Path(tempfile.mkdtemp(prefix="rtfd-test-"))
    state.chmod(0o755)  # PostgreSQL runs as an unprivileged user and must reach its data folder
    settings = Settings(state_dir=state, port_offset=TEST_PORT_OFFSET)
    native = NativeStack(settings)
    try:
        native.up(brokers=3, banks=())
        yield settings
    finally:
        native.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def unique_topic(stack: Settings):
    """A fresh topic name (created by the test) so tests never read each other's leftovers."""
    return f"test-{uuid.uuid4().hex[:10]}"
