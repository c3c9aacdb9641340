"""`partnerpulse demo` end to end on embedded defaults, in bounded time.

It must serve growing numbers while it runs, with campaigns of the current
quarter (its history ends now), and on SIGTERM stop everything it started
(the worker process) and remove its Redis keys from the Redis it was given.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from models.periods import Calendar
from tests.local_redis import REDIS_URL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


def poll(fetch: Callable[[], Any], ok: Callable[[Any], bool], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"gave up waiting; last: {value}"
        time.sleep(1)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return orjson.loads(response.read())


def processes_with(marker: bytes) -> list[int]:
    """Pids whose environment holds `marker` (the demo's worker carries its app id)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_demo_serves_growing_numbers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PP_")}
    env["PP_REDIS_URL"] = REDIS_URL  # the shared test Redis, where leftovers would show
    err = (tmp_path / "stderr").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--duration", "100", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=err,
    )
    try:
        assert demo.stdout is not None
        line = demo.stdout.readline().decode()
        match = re.fullmatch(r"dashboard: (http://127\.0\.0\.1:\d+/)\n", line)
        assert match, (line, (tmp_path / "stderr").read_text())
        url = match.group(1)
        prefix = re.search(r"redis key prefix: (\S+)", (tmp_path / "stderr").read_text())
        assert prefix
        run_id = prefix.group(1).split(":")[2]

        def leads() -> tuple[int, int]:
            metrics = get(url + "api/metrics?scope=all")["metrics"]
            applied = get(url + "api/status")["applied"]
            return metrics["all"].get("nb.leads.influenced", 0), sum(applied.values())

        first = poll(leads, lambda v: v[0] > 0, 60)
        # The worker may restart itself once early on (its delivery watchdog, exit 70),
        # which pauses applying for ~20 s: leave room for that.
        poll(leads, lambda v: v[0] > first[0] and v[1] > first[1], 45)
        assert processes_with(f"PP_APP_ID=pp-replay-{run_id}".encode())  # its worker runs
        year, quarter = Calendar().fiscal_quarter(datetime.now(UTC).date())
        scopes = get(url + "api/scopes")["scopes"]
        assert any(s.startswith(f"campaign:{year}q{quarter}_") for s in scopes), scopes

        demo.send_signal(signal.SIGTERM)
        assert demo.wait(40) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
        err.close()
    log = (tmp_path / "stderr").read_text()
    assert "stopped:" in log, log[-2000:]
    assert processes_with(f"PP_APP_ID=pp-replay-{run_id}".encode()) == []
    client = redis.Redis.from_url(REDIS_URL)
    assert list(client.scan_iter(match=f"pp:replay:{run_id}:*", count=1000)) == []
