"""The broker the streaming tests run on: Tansu and Apache Kafka, one of each per session.

Tests that take the `broker` fixture run twice, once per broker kind
(`[tansu]`, `[apache-kafka]`, the latter also marked ``apache_kafka``);
tests/conftest.py makes it available to every test directory.
Each kind is started once for the whole session (Apache Kafka's JVM takes
seconds to start; the tests isolate themselves by topic prefix and consumer
group), and pytest groups the tests by kind, so only one broker runs at a
time (`group_by_broker`).  ``-m 'not apache_kafka'`` runs the Tansu tier only.

Tests that also take `runtime` run on three stacks instead: the aiokafka
runtime on each broker, and the Faust runtime on Apache Kafka (marked
``faust``), the broker it is proven on (docs/decisions.md, ADR 1).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.runtime import embedded_broker
from streams.settings import Settings

KINDS = ["tansu", pytest.param("apache-kafka", marks=pytest.mark.apache_kafka)]
STACKS = [
    pytest.param("tansu", "aiokafka", id="tansu"),
    pytest.param("apache-kafka", "aiokafka", id="apache-kafka", marks=pytest.mark.apache_kafka),
    pytest.param(
        "apache-kafka",
        "faust",
        id="apache-kafka-faust",
        marks=[pytest.mark.apache_kafka, pytest.mark.faust],
    ),
]
"""(broker kind, `PP_RUNTIME`) of the tests that take both `broker` and `runtime`."""


def parametrize_stacks(metafunc: pytest.Metafunc) -> None:
    """A test that takes `runtime` runs on `STACKS` (the broker fixture indirectly,
    so each kind's session broker is shared with every other test).

    Added as a `parametrize` mark, which pytest lets take precedence over the
    broker fixture's own params (a plain `metafunc.parametrize` would clash).
    """
    if "runtime" in metafunc.fixturenames:
        metafunc.definition.add_marker(
            pytest.mark.parametrize(("broker", "runtime"), STACKS, indirect=["broker"])
        )


def group_by_broker(items: list[pytest.Item]) -> None:
    """Run every test on one broker kind before any on the next, so each session
    broker starts once (pytest's own grouping splits a kind whose tests take it
    through different parameter lists, and Apache Kafka takes seconds to start)."""
    order = {"tansu": 1, "apache-kafka": 2}

    def kind(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        return order.get(callspec.params.get("broker"), 0) if callspec else 0

    items.sort(key=kind)


@pytest.fixture(scope="session", params=KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """``kafka://`` URL of a running broker of each kind (`PP_BROKER`'s form)."""
    local = embedded_broker(Settings(embedded_broker=request.param))
    try:
        yield local.start().url
    finally:
        local.stop()
