"""What a worker tells operators: Prometheus metrics, liveness and readiness.

Each worker process serves, on `PP_METRICS_PORT` (0: off):

- `/metrics`: Prometheus text format (prometheus-client), one registry per
  worker, so two workers in one test process never mix their figures;
- `/healthz`: 200 while the process runs its loop (liveness);
- `/readyz`: 200 once the worker owns partitions and has applied a batch
  since it got them, 503 before (readiness: compose and Kubernetes wait on it).

The runtimes call the `record_*` methods at the points of the batch pipeline
they describe; nothing here reads Kafka or Redis itself, so a scrape never
slows the pipeline down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

BATCH_SIZES: Final = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
SECONDS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """The worker's operator metrics and its health state."""

    def __init__(self, runtime: str) -> None:
        self.registry = registry = CollectorRegistry()
        self.runtime = runtime
        # process_start_time_seconds, CPU, memory: a restarted process shows as a new start
        ProcessCollector(registry=registry)
        self.lag = Gauge(
            "partnerpulse_consumer_lag",
            "Messages in the partition after the last one this worker applied",
            ["topic", "partition"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "partnerpulse_batch_size", "Messages per batch", buckets=BATCH_SIZES, registry=registry
        )
        self.batch_seconds = Histogram(
            "partnerpulse_batch_seconds",
            "From a batch's poll to its Redis call landing",
            buckets=SECONDS,
            registry=registry,
        )
        self.sink_seconds = Histogram(
            "partnerpulse_sink_call_seconds",
            "Duration of one batch's Lua call",
            buckets=SECONDS,
            registry=registry,
        )
        self.events = Counter(
            "partnerpulse_events", "Messages consumed, by topic", ["topic"], registry=registry
        )
        self.dead_letters = Counter(
            "partnerpulse_dead_letters",
            "Messages dead-lettered, by reason",
            ["reason"],
            registry=registry,
        )
        self.restarts = Counter(
            "partnerpulse_restarts",
            "Recoveries inside the process (a delivery gap healed by seeking back), by cause",
            ["cause"],
            registry=registry,
        )
        self.cache = Counter(
            "partnerpulse_state_cache",
            "Subject states found in the worker's cache (hit) or read from Redis (miss)",
            ["result"],
            registry=registry,
        )
        self.refusals = Counter(
            "partnerpulse_sink_refusals",
            "Batches the Lua script refused, by reason (FENCED, STALE, OFFSETS)",
            ["reason"],
            registry=registry,
        )
        self.owned = Gauge(
            "partnerpulse_owned_partitions", "Partitions this worker owns", registry=registry
        )
        Gauge(
            "partnerpulse_runtime_info", "The consumer runtime", ["runtime"], registry=registry
        ).labels(runtime).set(1)
        self._assigned = False
        self._applied_since_assignment = False

    # --- the pipeline reports -------------------------------------------------

    def record_assignment(self, partitions: int) -> None:
        self.owned.set(partitions)
        self._assigned = partitions > 0
        self._applied_since_assignment = False

    def record_batch(self, topics: Iterable[str], dead_reasons: Iterable[str]) -> None:
        """A batch was polled: its messages by topic and its dead letters by reason."""
        sizes: dict[str, int] = {}
        for topic in topics:
            sizes[topic] = sizes.get(topic, 0) + 1
        for topic, n in sizes.items():
            self.events.labels(topic).inc(n)
        self.batch_size.observe(sum(sizes.values()))
        for reason in dead_reasons:
            self.dead_letters.labels(reason).inc()

    def record_cache(self, hits: int, misses: int) -> None:
        self.cache.labels("hit").inc(hits)
        self.cache.labels("miss").inc(misses)

    def record_applied(self, batch_seconds: float, sink_seconds: float) -> None:
        self.batch_seconds.observe(batch_seconds)
        self.sink_seconds.observe(sink_seconds)
        self._applied_since_assignment = True

    def record_refusal(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def record_restart(self, cause: str) -> None:
        self.restarts.labels(cause).inc()

    def record_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """Lag per (topic, partition): the broker's high watermark minus the next
        offset to apply; partitions no longer owned are dropped."""
        self.lag.clear()
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition)).set(max(lag, 0))

    @property
    def ready(self) -> bool:
        return self._assigned and self._applied_since_assignment

    # --- serving ---------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def serve(self, host: str, port: int) -> web.AppRunner:
        """Start serving; the caller cleans the returned runner up."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ready\n")
        reason = "no partitions" if not self._assigned else "no batch applied yet"
        return web.Response(status=503, text=f"not ready: {reason}\n")
