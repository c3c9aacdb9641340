"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.redis_servers import free_port, stop


@pytest.fixture
def redis_server() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A port with no server yet, and the redis-server processes a test starts on it."""
    procs: list[subprocess.Popen[bytes]] = []
    yield free_port(), procs
    for proc in procs:
        stop(proc)
