"""Security settings from the environment: Kafka SASL/SSL, Redis AUTH/TLS, no leaked secrets."""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio.connection import Connection, SSLConnection

from streams import admin, runtime
from streams.runtime import settings_env, sink_for
from streams.settings import Settings

REDIS_SECRET = "redis-Pw-8f3a"
SASL_SECRET = "sasl-Pw-c41d"
URL_SECRET = "url-Pw-9e77"
SECRETS = (REDIS_SECRET, SASL_SECRET, URL_SECRET)
SASL_USER = {"kafka_sasl_username": "svc-pp", "kafka_sasl_password": SASL_SECRET}


def sasl_arguments(protocol: str, mechanism: str) -> dict[str, Any]:
    """The aiokafka arguments that `SASL_USER` over `protocol` / `mechanism` must give."""
    return {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "svc-pp",
        "sasl_plain_password": SASL_SECRET,
    }


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate (used as CA and as client certificate), its key, another key."""
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pp-test-ca",
        "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
    )  # fmt: skip
    openssl("genpkey", "-algorithm", "RSA", "-out", str(d / "other.pem"))
    return {name: str(d / f"{name}.pem") for name in ("cert", "key", "other")}


def from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings read from `PP_<NAME>` variables, exactly as the worker reads them."""
    for name, value in env.items():
        monkeypatch.setenv(f"PP_{name.upper()}", value)
    return Settings()


def ca_subjects(context: ssl.SSLContext) -> list[Any]:
    return [cert["subject"] for cert in context.get_ca_certs()]


# --- Kafka ------------------------------------------------------------------------


def test_plaintext_has_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch)
    assert settings.aiokafka_security() == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_maps_mechanism_and_credentials(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    settings = from_env(
        monkeypatch,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        **SASL_USER,
    )
    expected = sasl_arguments("SASL_PLAINTEXT", mechanism)
    assert settings.aiokafka_security() == expected


def test_sasl_ssl_verifies_with_our_ca_and_client_certificate(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, str]
) -> None:
    settings = from_env(
        monkeypatch,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_ssl_ca=pki["cert"],
        kafka_ssl_cert=pki["cert"],
        kafka_ssl_key=pki["key"],
        **SASL_USER,
    )
    options = settings.aiokafka_security()
    context = options.pop("ssl_context")
    assert options == sasl_arguments("SASL_SSL", "SCRAM-SHA-256")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert ca_subjects(context) == [((("commonName", "pp-test-ca"),),)]


def test_ssl_without_sasl(monkeypatch: pytest.MonkeyPatch, pki: dict[str, str]) -> None:
    settings = from_env(monkeypatch, kafka_security_protocol="SSL", kafka_ssl_ca=pki["cert"])
    options = settings.aiokafka_security()
    assert options.keys() == {"security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    assert ca_subjects(options["ssl_context"]) == [((("commonName", "pp-test-ca"),),)]


def test_a_client_key_that_does_not_match_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, str]
) -> None:
    settings = from_env(
        monkeypatch,
        kafka_security_protocol="SSL",
        kafka_ssl_cert=pki["cert"],
        kafka_ssl_key=pki["other"],
    )
    with pytest.raises(ssl.SSLError):
        settings.aiokafka_security()


@pytest.mark.parametrize(
    "env",
    [
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},
        {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_password": "p"},
        {"kafka_ssl_ca": "/etc/ssl/ca.pem"},
        {"kafka_security_protocol": "SSL", "kafka_ssl_cert": "/etc/ssl/c.pem"},
        {"redis_url": "redis://h:6379/0", "redis_tls_ca": "/etc/ssl/ca.pem"},
        {"redis_tls_ca": "/etc/ssl/ca.pem"},
        {"redis_url": "rediss://h:6380/0", "redis_tls_key": "/etc/ssl/k.pem"},
    ],
)
def test_security_that_cannot_take_effect_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    with pytest.raises(ValidationError):
        from_env(monkeypatch, **env)


# --- Redis --------------------------------------------------------------------------


def test_redis_tls_files_and_password_reach_the_client(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, str]
) -> None:
    settings = from_env(
        monkeypatch,
        redis_url="rediss://redis.internal:6380/2",
        redis_password=REDIS_SECRET,
        redis_tls_ca=pki["cert"],
        redis_tls_cert=pki["cert"],
        redis_tls_key=pki["key"],
    )
    assert settings.redis_client_options() == {
        "password": REDIS_SECRET,
        "ssl_ca_certs": pki["cert"],
        "ssl_certfile": pki["cert"],
        "ssl_keyfile": pki["key"],
    }
    assert settings.redis_url is not None
    sink = sink_for(settings, settings.redis_url)  # builds the client; connects lazily
    pool = sink.client.connection_pool
    assert pool.connection_class is SSLConnection
    connection = pool.make_connection()  # type: ignore[no-untyped-call]
    assert isinstance(connection, SSLConnection)
    assert (connection.host, connection.port, connection.db) == ("redis.internal", 6380, 2)
    assert connection.password == REDIS_SECRET
    tls = connection.ssl_context
    assert (tls.ca_certs, tls.certfile, tls.keyfile) == (pki["cert"], pki["cert"], pki["key"])
    assert tls.cert_reqs == ssl.CERT_REQUIRED and tls.check_hostname


def test_plain_redis_gets_only_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(
        monkeypatch, redis_url="redis://127.0.0.1:6379/0", redis_password=REDIS_SECRET
    )
    assert settings.redis_client_options() == {"password": REDIS_SECRET}
    assert settings.redis_url is not None
    connection = sink_for(settings, settings.redis_url).client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    assert type(connection) is Connection and connection.password == REDIS_SECRET


# --- secrets are never shown ----------------------------------------------------------


def test_secrets_never_appear_in_repr_str_logs_or_child_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = from_env(
        monkeypatch,
        redis_url=f"redis://pp:{URL_SECRET}@10.0.0.5:6379/0",
        redis_password=REDIS_SECRET,
        kafka_security_protocol="SASL_PLAINTEXT",
        **SASL_USER,
    )
    # the secrets are there to be used...
    assert settings.aiokafka_security()["sasl_plain_password"] == SASL_SECRET
    assert settings.redis_client_options()["password"] == REDIS_SECRET
    # ...and shown nowhere
    log = logging.getLogger("pp-test-settings")
    with caplog.at_level(logging.DEBUG, logger="pp-test-settings"):
        log.info("settings %s", settings)
        log.info("settings %r", settings)
    shown = [
        repr(settings),
        str(settings),
        f"{settings}",
        settings.model_dump_json(),
        str(settings.model_dump()),
        caplog.text,
        str(settings_env(settings)),
        sink_for(settings, str(settings.redis_url)).target,
    ]
    assert "10.0.0.5" in repr(settings)  # the URL is shown, without its credentials
    for text in shown:
        for secret in SECRETS:
            assert secret not in text, (secret, text)


class Refused(Exception):
    """Raised by the fake Kafka clients once they have recorded their arguments."""


async def test_send_creates_topics_and_produces_with_the_security_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both clients `send` (and the worker's topic creation) open get the credentials."""
    seen: dict[str, dict[str, Any]] = {}

    class FakeAdmin:
        def __init__(self, **kwargs: Any) -> None:
            seen["admin"] = kwargs

        async def start(self) -> None:
            raise Refused

        async def close(self) -> None:
            pass

    class FakeProducer:
        def __init__(self, **kwargs: Any) -> None:
            seen["producer"] = kwargs

        async def start(self) -> None:
            raise Refused

    monkeypatch.setattr(admin, "AIOKafkaAdminClient", FakeAdmin)
    monkeypatch.setattr(runtime, "AIOKafkaProducer", FakeProducer)
    settings = from_env(
        monkeypatch,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        **SASL_USER,
    )
    expected = sasl_arguments("SASL_PLAINTEXT", "SCRAM-SHA-512")
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    with pytest.raises(Refused):
        await runtime.send_file(events, settings, "broker:9092")
    assert expected.items() <= seen["admin"].items()
    monkeypatch.setattr(runtime, "ensure_topics", lambda *args, **kwargs: asyncio.sleep(0))
    with pytest.raises(Refused):
        await runtime.send_file(events, settings, "broker:9092")
    assert expected.items() <= seen["producer"].items()
