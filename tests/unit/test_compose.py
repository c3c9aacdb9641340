"""docker-compose.yml and Dockerfile: checked statically (no Docker engine needed).

The environment is checked against `Settings`, so a renamed or misspelt PP_*
variable fails here rather than being silently ignored in a container.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NOT_SETTINGS = {"PP_LOGLEVEL"}  # read by streams.runtime.run_worker from the environment


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as `docker compose` reads it with no variables set:
    `${NAME:-default}` becomes its default."""
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", (ROOT / "docker-compose.yml").read_text())
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def test_services_and_images(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert set(svc) == {"kafka", "redis", "worker", "dashboard"}
    assert svc["kafka"]["image"].startswith("apache/kafka:")
    assert svc["redis"]["image"].startswith("redis:")
    assert svc["worker"]["image"] == svc["dashboard"]["image"]
    assert svc["worker"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert not any("zookeeper" in name for name in svc)


def test_kafka_runs_kraft_and_advertises_what_the_workers_use(compose: dict[str, Any]) -> None:
    env = services(compose)["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    assert f"CONTROLLER://:{voter.rpartition(':')[2]}" in env["KAFKA_LISTENERS"].split(",")
    broker = services(compose)["worker"]["environment"]["PP_BROKER"]
    assert broker.startswith("kafka://")
    assert f"PLAINTEXT://{broker.removeprefix('kafka://')}" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"  # one broker


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(
    compose: dict[str, Any],
) -> None:
    svc = services(compose)
    for name, service in svc.items():
        test = service["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, name
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in svc and rule["condition"] == "service_healthy", (name, dependency)
    assert set(svc["worker"]["depends_on"]) == {"kafka", "redis"}
    assert "redis" in svc["dashboard"]["depends_on"]


def test_workers_scale(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    assert worker["restart"] in {"unless-stopped", "always", "on-failure"}  # exit 70 = restart me
    assert int(worker["environment"]["PP_PARTITIONS"]) >= 2


@pytest.mark.parametrize("name", ["worker", "dashboard"])
def test_environment_names_are_settings(compose: dict[str, Any], name: str) -> None:
    env = services(compose)[name]["environment"]
    fields = {f"PP_{field.upper()}" for field in Settings.model_fields}
    unknown = {key for key in env if key not in fields} - NOT_SETTINGS
    assert not unknown
    Settings.model_validate(  # the values parse, too
        {k.removeprefix("PP_").lower(): v for k, v in env.items() if k not in NOT_SETTINGS}
    )
    assert urlsplit(env["PP_REDIS_URL"]).hostname == "redis"
    assert urlsplit(env["PP_BROKER"].replace("kafka://", "tcp://")).hostname == "kafka"


def test_dashboard_is_published_on_host_loopback_and_checks_its_own_port(
    compose: dict[str, Any],
) -> None:
    dashboard = services(compose)["dashboard"]
    env = dashboard["environment"]
    (mapping,) = dashboard["ports"]
    host_ip, _, container_port = mapping.split(":")
    assert host_ip == "127.0.0.1"
    assert container_port == env["PP_WEB_PORT"]
    assert env["PP_WEB_HOST"] == "0.0.0.0"  # reachable through the port mapping
    assert f":{container_port}/healthz" in " ".join(dashboard["healthcheck"]["test"])
    assert env["PP_WEB_TOKEN"] in ("", None)  # no token by default: loopback names only
    assert dashboard["command"][:3] == ["python", "-m", "streams.web"]
    assert importlib.util.find_spec("streams.web") is not None


def test_dockerfile_installs_the_package_and_runs_unprivileged() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert lines[[line.startswith("FROM") for line in lines].index(True)].startswith(
        "FROM python:3.11"
    )
    for package in ("models", "streams", "sinks", "datagen", "benchmarks"):
        assert f"COPY {package} ./{package}" in lines
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    assert 'CMD ["partnerpulse", "worker"]' in lines


def test_workers_serve_readiness_and_metrics(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    env = worker["environment"]
    port = env["PP_METRICS_PORT"]
    assert int(port) > 0 and env["PP_METRICS_HOST"] == "0.0.0.0"
    assert f":{port}/readyz" in " ".join(worker["healthcheck"]["test"])
    assert env["PP_RUNTIME"] == "aiokafka"  # the default; PP_RUNTIME=faust switches
