"""`partnerpulse bench`: the pipeline's speed beside its baselines, in one run.

The machine this runs on is small and shared (2 vCPU, other test runs), so
absolute figures swing by tens of percent between runs.  Every figure is
therefore measured in the same run, on the same broker and Redis, and
reported with its ratio to the baselines; `repeat` repetitions give a median.
Nothing here asserts a timing.

Per repetition, on one generated event file:

- raw: aiokafka consume + orjson decode of the file's lines (one scratch topic);
- Faust bare: a `faust.App` agent iterating `stream.take()` over the same
  topic and counting, no state;
- Faust textbook: an agent that parses each event and re-assigns one Table
  value per event (changelog-backed, memory store);
- Quix Streams: its stateful `update`, one RocksDB state key per event
  (benchmarks/quix_baseline.py; n/a on Tansu);
- the full pipeline with one worker, then with two workers, each on fresh
  topics and Redis keys holding the whole file before the workers start;
  timed from the moment every worker owns its partitions and one batch was
  applied until every input, internal and outbox message is through (what
  was applied before that moment is not counted);
- latency: a fresh run's worker fed at a steady `rate`, each event timed
  from its `send()` call to Redis recording its offset as applied;
- restart: a fresh run's only worker, SIGKILLed once it applied a batch of
  the file's backlog; timed from the replacement's spawn until Redis's
  applied input offsets move again (process start, group join, which waits
  out the dead member's session, partition claim, seek, first batch applied);
- recompute: the batch oracle over the same file, in this process.

The one-worker rate, the latency and the restart are measured for every
runtime in `BenchConfig.runtimes` (aiokafka and Faust agents), each run
with the same helpers, only `runtime=` differs; the headline figures are
those of the configured runtime (`PP_RUNTIME`), measured once.

The Faust baselines run in a subprocess with a timeout (Faust can hang on
the embedded broker, docs/streaming-spike.md): a failure is reported as
"n/a (reason)", never a hang.  State size is measured on the one-worker run's
Redis keys; `state_leads` also encodes that many generated leads' states with
`streams/codec.py` through the engine, for the 1M-lead estimate.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import Any, Final

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]

from benchmarks import quix_baseline
from benchmarks.figures import RESULT_MARK, Figure
from datagen import SyntheticConfig, generate
from models.config import EngineConfig
from models.engine import Engine
from models.events import INPUT_TOPICS, route
from models.parse import DEFAULT_MAX_BYTES, Rejection, parse_event
from models.periods import SERIES_METRICS, Calendar, Window
from sinks.redis_sink import RedisSink
from streams.admin import create_topics, ensure_topics
from streams.cli.common import gc_paused, json_document, run_file
from streams.processing import CONSUMED
from streams.runtime import (
    EndOffsets,
    Endpoints,
    ReplayRun,
    destination,
    infrastructure,
    replay_run,
    settings_env,
    sink_for,
    stop_worker,
)
from streams.settings import Settings
from streams.state import codec
from streams.state.store import StateKeys, pack
from streams.windows import read_window, window_days

Record = tuple[str, bytes | None, bytes]
"""(topic before prefix, key, value): one line of the file, routed as `send` routes it."""

EVENTS_PER_LEAD: Final = 9
"""About what the generator makes per lead (for sizing a file by events)."""
RUN_TIMEOUT: Final = 600.0
SLOWEST_RATE: Final = 1000.0
"""Events/s below which a pipeline run counts as stuck: its deadline grows by
`events / SLOWEST_RATE` beyond `RUN_TIMEOUT`."""
_LINE: Final = re.compile(r":\d+\)$")
_HANDLE: Final = "Worker._handle (streams/worker.py)"


@dataclass(frozen=True)
class BenchConfig:
    events: int = 50_000
    partitions: int = 8
    rate: float = 2000.0
    seconds: float = 10.0
    repeat: int = 3
    faust_timeout: float = 120.0
    state_leads: int = 0
    """When > 0: also encode this many generated leads' states (the 1M-lead estimate)."""
    memory_leads: int = 0
    """When > 0: one more 1-worker run over this many generated leads' events, for the
    worker's peak RSS and Redis's bytes per lead at that size."""
    profile: Path | None = None
    """When set: one extra one-worker run under py-spy, raw stacks written here."""
    series_scale: tuple[int, int, int] = (50, 500, 20)
    """Partners, campaigns and channels of the synthetic year of series (0s: skip it)."""
    runtimes: tuple[str, ...] = ("aiokafka", "faust")
    """Runtimes measured side by side (the configured one is always among them)."""
    events_file: Path | None = None
    """When set: its first `events` lines are the measured events, not generated ones.
    Two versions compare fairly only on the same input (a generator's output changes
    with the version: since 2026-12 most touches have no `action`, which older
    versions dead-letter)."""


@dataclass
class RuntimeFigures:
    """One runtime's figures in one repetition, measured back to back on one broker."""

    one_worker: Figure
    p50_ms: Figure
    p99_ms: Figure
    restart_s: Figure
    """Replacement worker's spawn → Redis's applied input offsets move again."""


@dataclass
class Repetition:
    """The figures of one repetition, all measured back to back."""

    raw: Figure
    faust_bare: Figure
    faust_table: Figure
    quix: Figure
    one_worker: Figure
    two_workers: Figure
    p50_ms: Figure
    p99_ms: Figure
    recompute: Figure
    runtimes: dict[str, RuntimeFigures] = field(default_factory=dict)
    """Per runtime; the configured one's figures are also the ones above."""


RUNTIME_FIGURES: Final = tuple(f.name for f in fields(RuntimeFigures))


@dataclass
class StateSize:
    """Bytes of subject state per lead, as Redis holds it and as the codec writes it."""

    leads: int
    lead_value_bytes: float
    lead_hash_bytes: float
    all_state_bytes: float
    derived_bytes: float
    """`pp:contrib:*` and `pp:credit:*` (what the sink diffs against), per lead."""
    series_bytes: float = 0.0
    """`pp:d:*` (the daily series), per lead."""
    metric_bytes: float = 0.0
    """`pp:m:*` (the running totals), per lead."""
    worker_peak_rss: int | None = None
    """The worker's peak resident memory (VmHWM), bytes; None where /proc has none."""

    def lines(self) -> list[str]:
        rss = self.worker_peak_rss
        return [
            f"state per lead ({self.leads:,} leads in Redis)",
            f"  lead JSON value (HSTRLEN mean)   {self.lead_value_bytes:8,.0f} B",
            f"  lead hash MEMORY USAGE / leads   {self.lead_hash_bytes:8,.0f} B",
            f"  all pp:state:* MEMORY / leads    {self.all_state_bytes:8,.0f} B  (target ≤ 1024)",
            f"  + contrib/credit keys / leads    {self.derived_bytes:8,.0f} B  (derived)",
            f"  pp:d:* series MEMORY / leads     {self.series_bytes:8,.0f} B  "
            f"(pp:m:* totals {self.metric_bytes:,.0f} B)",
            f"  worker peak RSS                  {rss / 2**20:8,.0f} MiB"
            if rss is not None
            else "  worker peak RSS                       n/a",
        ]


@dataclass
class CodecSize:
    """Codec-encoded state of many generated leads (no broker), for extrapolation."""

    leads: int
    lead_mean: float
    lead_p99: float
    lead_max: int
    opportunity_per_lead: float
    redis_per_lead: float
    """MEMORY USAGE of the encoded lead states loaded into a scratch hash, per lead."""
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"codec state of {self.leads:,} generated leads "
            f"({self.seconds:.0f} s, engine, no broker)",
            f"  lead JSON mean {self.lead_mean:,.0f} B  p99 {self.lead_p99:,.0f} B  "
            f"max {self.lead_max:,} B",
            f"  + opportunity state per lead {self.opportunity_per_lead:,.0f} B",
            f"  Redis hash bytes per lead {self.redis_per_lead:,.0f} B  "
            f"→ {self.redis_per_lead * 1e6 / 2**30:.2f} GiB per 1M leads (lead hash only)",
        ]


@dataclass
class SeriesScale:
    """A year of daily series at a given scale, written straight into Redis: its bytes,
    and the time to read one quarter of every NB/EX metric of every partner scope."""

    partners: int
    campaigns: int
    channels: int
    keys: int
    fields: int
    bytes: int
    read_keys: int
    read_ms: float
    """Median of 5 reads, each one pipelined round trip (`streams.windows.read_window`)."""

    def lines(self) -> list[str]:
        return [
            f"series, one year: {self.partners} partners, {self.campaigns:,} campaigns "
            f"(a quarter each), {self.channels} channels, every day, "
            f"{len(SERIES_METRICS)} metrics",
            f"  {self.keys:,} hashes, {self.fields:,} days: {self.bytes / 2**20:,.1f} MiB "
            f"({self.bytes / max(self.fields, 1):.0f} B/day; budget ≤ {SERIES_BUDGET_MIB} MiB)",
            f"  a quarter of {len(NB_EX)} NB/EX metrics x {self.partners + 1} partner scopes "
            f"({self.read_keys:,} HMGETs, one round trip): {self.read_ms:,.1f} ms",
        ]


SERIES_BUDGET_MIB: Final = 256
"""Redis memory a year of series may take at the bench's scale (docs/benchmarks.md)."""
NB_EX: Final = tuple(sorted(m for m in SERIES_METRICS if m.startswith(("nb.", "ex."))))


@dataclass
class BenchResult:
    config: BenchConfig
    events: int
    leads: int
    broker: str = "configured"
    """The embedded broker the run started ("tansu", "apache-kafka"), else "configured"."""
    runtime: str = "aiokafka"
    """The configured runtime (`PP_RUNTIME`): the headline figures are its."""
    repetitions: list[Repetition] = field(default_factory=list)
    state: StateSize | None = None
    memory: StateSize | None = None
    """The `memory_leads` run's state and worker RSS."""
    memory_rate: Figure | None = None
    codec_size: CodecSize | None = None
    profiled_rate: Figure | None = None
    series: SeriesScale | None = None

    def median(self, pick: Callable[[Repetition], Figure]) -> Figure:
        """Median of the repetitions that measured it; else the first reason."""
        values = [pick(r) for r in self.repetitions]
        numbers = [v for v in values if isinstance(v, float)]
        return statistics.median(numbers) if numbers else str(values[0])

    def ratio(
        self, top: Callable[[Repetition], Figure], bottom: Callable[[Repetition], Figure]
    ) -> Figure:
        """Median of the per-repetition ratios: each pair was measured back to back."""

        def one(r: Repetition) -> Figure:
            a, b = top(r), bottom(r)
            return a / b if isinstance(a, float) and isinstance(b, float) and b else "n/a"

        return self.median(one)

    def runtimes(self) -> list[str]:
        """The runtimes measured, the configured one first."""
        return list(self.repetitions[0].runtimes) if self.repetitions else []

    def runtime_median(self, runtime: str, name: str) -> Figure:
        """Median of one runtime's figure over the repetitions."""
        return self.median(_of(runtime, name))

    def runtime_ratios(self) -> dict[str, Figure]:
        """Each other runtime's one-worker rate ÷ the configured one's, per repetition."""
        mine = self.runtime
        return {
            f"{runtime}_to_{mine}": self.ratio(_of(runtime, "one_worker"), attrgetter("one_worker"))
            for runtime in self.runtimes()
            if runtime != mine
        }

    def as_json(self) -> dict[str, Any]:
        """Every figure, for scripts and the smoke test (strings are "n/a (reason)")."""
        names = [f.name for f in fields(Repetition) if f.name != "runtimes"]
        one = attrgetter("one_worker")
        return {
            "events": self.events,
            "leads": self.leads,
            "partitions": self.config.partitions,
            "broker": self.broker,
            "runtime": self.runtime,
            "runtimes": {
                runtime: {name: self.runtime_median(runtime, name) for name in RUNTIME_FIGURES}
                for runtime in self.runtimes()
            },
            "runs": [asdict(r) for r in self.repetitions],
            "median": {name: self.median(attrgetter(name)) for name in names},
            "ratios": {
                "pipeline_to_faust_bare": self.ratio(one, attrgetter("faust_bare")),
                "pipeline_to_faust_textbook": self.ratio(one, attrgetter("faust_table")),
                "pipeline_to_quix": self.ratio(one, attrgetter("quix")),
                "pipeline_to_raw": self.ratio(one, attrgetter("raw")),
                "two_workers_to_one": self.ratio(attrgetter("two_workers"), one),
                **self.runtime_ratios(),
            },
            "state": asdict(self.state) if self.state else None,
            "memory": asdict(self.memory) if self.memory else None,
            "memory_rate": self.memory_rate,
            "codec_state": asdict(self.codec_size) if self.codec_size else None,
            "profiled_rate": self.profiled_rate,
            "series": asdict(self.series) if self.series else None,
        }

    def lines(self) -> list[str]:
        c = self.config
        out = [
            f"PartnerPulse bench: {self.events:,} events ({self.leads:,} leads), "
            f"{c.partitions} partitions, {len(self.repetitions)} repetition(s); "
            "median [each run]",
        ]

        def row(label: str, pick: Callable[[Repetition], Figure], unit: str) -> None:
            runs = ", ".join(_fmt(pick(r), "") for r in self.repetitions)
            out.append(f"{label:<36}{_fmt(self.median(pick), unit):>18}  [{runs}]")

        def ratio(
            label: str, top: Callable[[Repetition], Figure], bottom: Callable[[Repetition], Figure]
        ) -> None:
            value = self.ratio(top, bottom)
            shown = f"{value:.2f}x" if isinstance(value, float) else value
            out.append(f"  {label:<34}{shown:>18}")

        raw, bare, table = (lambda r: r.raw), (lambda r: r.faust_bare), (lambda r: r.faust_table)
        one, two = (lambda r: r.one_worker), (lambda r: r.two_workers)
        row("raw aiokafka consume+orjson", raw, "msg/s")
        row("Faust bare take() iteration", bare, "ev/s")
        row("Faust textbook (1 table update/ev)", table, "ev/s")
        row("Quix Streams (1 state update/ev)", lambda r: r.quix, "ev/s")
        row("full pipeline, 1 worker", one, "ev/s")
        ratio("÷ Faust bare (target ≥ 0.90)", one, bare)
        ratio("÷ Faust textbook (target ≥ 3)", one, table)
        ratio("÷ Quix Streams", one, lambda r: r.quix)
        ratio("÷ raw aiokafka", one, raw)
        row(f"full pipeline, 2 workers, {c.partitions} parts", two, "ev/s")
        ratio("2 workers ÷ 1 (target ≥ 1.6)", two, one)
        row(f"latency @ {c.rate:,.0f}/s for {c.seconds:g} s, p50", lambda r: r.p50_ms, "ms")
        row("                          p99 (≤ 250)", lambda r: r.p99_ms, "ms")
        row("recompute (batch oracle)", lambda r: r.recompute, "ev/s")
        out += self.runtime_lines()
        if self.state is not None:
            out += self.state.lines()
        if self.memory is not None:
            rate = _fmt(self.memory_rate or "n/a", "ev/s")
            out.append(f"{self.memory.leads:,}-lead run, 1 worker, {rate}:")
            out += self.memory.lines()
        if self.codec_size is not None:
            out += self.codec_size.lines()
        if self.series is not None:
            out += self.series.lines()
        if self.profiled_rate is not None:
            out.append(
                f"profiled 1-worker run (py-spy, not in the medians): "
                f"{_fmt(self.profiled_rate, 'ev/s')} → {c.profile}"
            )
        if self.config.profile is not None and self.config.profile.exists():
            out += profile_top(self.config.profile)
        return out

    def runtime_lines(self) -> list[str]:
        """The runtimes side by side (medians), on this run's broker."""
        runtimes = self.runtimes()
        if not runtimes:
            return []
        rows = [
            ("full pipeline, 1 worker", "one_worker", "ev/s", 0),
            (f"latency @ {self.config.rate:,.0f}/s, p50", "p50_ms", "ms", 0),
            ("                      p99", "p99_ms", "ms", 0),
            ("restart to processing", "restart_s", "s", 1),
        ]
        head = "".join(f"{runtime:>18}" for runtime in runtimes)
        out = [f"{'runtimes on ' + self.broker:<36}{head}"]
        for label, name, unit, digits in rows:
            cells = "".join(
                f"{_fmt(self.runtime_median(rt, name), unit, digits):>18}" for rt in runtimes
            )
            out.append(f"  {label:<34}{cells}")
        for name, value in self.runtime_ratios().items():
            shown = f"{value:.2f}x" if isinstance(value, float) else value
            out.append(f"  {name.replace('_to_', ' ÷ ') + ', 1 worker':<34}{shown:>18}")
        return out


def _of(runtime: str, name: str) -> Callable[[Repetition], Figure]:
    """Picks one runtime's figure `name` out of a repetition."""
    return lambda r: getattr(r.runtimes[runtime], name)


def _fmt(value: Figure, unit: str, digits: int = 0) -> str:
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f} {unit}".strip()


# --- the run -----------------------------------------------------------------


def run_bench(config: BenchConfig, workdir: Path, report: Callable[[str], None]) -> BenchResult:
    """Every figure, `config.repeat` times, on one broker and one Redis."""
    if config.events_file is not None:
        lines = [ln for ln in config.events_file.read_bytes().splitlines() if ln.strip()]
        lines = lines[: config.events]
    else:
        lines = _generate(
            SyntheticConfig(
                seed=99,
                leads=max(10, config.events // EVENTS_PER_LEAD),
                duplicates=0.02,
                shuffle=0.3,
                invalid=0.005,
            ),
            config.events,
        )
    steady = _generate(
        SyntheticConfig(
            seed=7, leads=max(10, int(config.rate * config.seconds) // EVENTS_PER_LEAD)
        ),
        int(config.rate * config.seconds),
    )
    path = workdir / "bench.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    records, steady_records = _records(lines), _records(steady)
    leads = len({r[1] for r in records if r[0] == "leads"})
    configured = Settings()
    broker = "configured" if configured.broker else configured.embedded_broker
    result = BenchResult(config, len(records), leads, broker, configured.runtime)
    runtimes = list(dict.fromkeys((configured.runtime, *config.runtimes)))
    with infrastructure(configured) as (base, endpoints):
        base = base.model_copy(
            update={"broker": endpoints.broker, "redis_url": endpoints.redis_url}
        )
        scratch = asyncio.run(_scratch_topic(base, endpoints, lines, config.partitions))
        for n in range(config.repeat):
            report(f"repetition {n + 1}/{config.repeat}")
            raw = asyncio.run(
                _raw_rate(endpoints.bootstrap, scratch, config.partitions, len(lines))
            )
            bare = _faust(base, endpoints, scratch, "bare", len(lines), config)
            table = _faust(base, endpoints, scratch, "table", len(lines), config)
            quix = quix_baseline.quix_rate(
                endpoints.bootstrap, scratch, config.partitions, len(lines), config.faust_timeout
            )
            figures: dict[str, RuntimeFigures] = {}
            for runtime in runtimes:
                measure_state = result.state is None and runtime == base.runtime
                figures[runtime], state = _runtime_figures(
                    base, records, steady_records, config, runtime, measure_state
                )
                result.state = result.state or state
                report(
                    f"{runtime}: "
                    + " | ".join(f"{k} {_fmt(v, '', 1)}" for k, v in vars(figures[runtime]).items())
                )
            two, _ = _pipeline(base, records, config.partitions, 2, False)
            recompute = _recompute_rate(path)
            mine = figures[base.runtime]
            result.repetitions.append(
                Repetition(
                    raw,
                    bare,
                    table,
                    quix,
                    mine.one_worker,
                    two,
                    mine.p50_ms,
                    mine.p99_ms,
                    recompute,
                    figures,
                )
            )
            report(
                " | ".join(
                    f"{k} {_fmt(v, '')}"
                    for k, v in vars(result.repetitions[-1]).items()
                    if k != "runtimes"
                )
            )
        if config.profile is not None:
            report("profiled run")
            result.profiled_rate, _ = _pipeline(
                base, records, config.partitions, 1, False, profile=config.profile
            )
        if config.memory_leads:
            report(f"one worker over {config.memory_leads:,} leads' events")
            many = _generate(SyntheticConfig(seed=5, leads=config.memory_leads), 2**62)
            result.memory_rate, result.memory = _pipeline(
                base, _records(many), config.partitions, 1, True
            )
        if any(config.series_scale):
            report("a year of series: bytes and a quarter's read")
            result.series = asyncio.run(series_scale(endpoints.redis_url, *config.series_scale))
    if config.state_leads:
        report(f"encoding {config.state_leads:,} leads' state")
        result.codec_size = codec_size(
            config.state_leads, Settings().redis_url or endpoints.redis_url
        )
    return result


def _generate(config: SyntheticConfig, events: int) -> list[bytes]:
    """The first `events` lines of a generated stream (malformed lines included)."""
    items = generate(config)[:events]
    return [i.encode() if isinstance(i, str) else orjson.dumps(i) for i in items]


def _records(lines: Sequence[bytes]) -> list[Record]:
    """(topic, key, line) per line; topic names unprefixed (each run adds its own)."""
    plain = Settings().model_copy(update={"topic_prefix": ""})
    return [(*destination(line, plain), line) for line in lines]


async def _scratch_topic(
    settings: Settings, endpoints: Endpoints, lines: Sequence[bytes], partitions: int
) -> str:
    """Every line, unkeyed, in one topic: the input of the raw and Faust baselines."""
    topic = f"pp-bench-{uuid.uuid4().hex[:10]}"
    await create_topics(endpoints.bootstrap, {topic: partitions})
    await _produce(endpoints.bootstrap, settings, [(topic, None, line) for line in lines])
    return topic


async def _produce(bootstrap: str, settings: Settings, records: Sequence[Record]) -> None:
    """Produce `records` (topic names already final), batched, waiting for every ack."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=1 << 20,
        acks="all",
        **settings.aiokafka_security(),
    )
    await producer.start()
    try:
        pending = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _raw_rate(bootstrap: str, topic: str, partitions: int, count: int) -> Figure:
    """aiokafka consume + orjson decode of the scratch topic, from its first message."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < count:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        orjson.loads(record.value)
                seen += len(records)
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


# --- Faust baselines (subprocess) ---------------------------------------------


def _faust(
    settings: Settings, endpoints: Endpoints, topic: str, mode: str, count: int, config: BenchConfig
) -> Figure:
    """One Faust baseline in a child process; "n/a (reason)" if it fails or hangs."""
    spec = {
        "mode": mode,
        "broker": endpoints.broker,
        "topic": topic,
        "count": count,
        "partitions": config.partitions,
        "take": settings.batch_size,
        "within": settings.batch_within,
        "session_timeout": settings.session_timeout,
        "app_id": f"pp-bench-faust-{mode}-{uuid.uuid4().hex[:8]}",
    }
    # cwd: Faust creates its data directory there.
    with tempfile.TemporaryDirectory() as datadir:
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "benchmarks.bench", json.dumps(spec)],
                capture_output=True,
                timeout=config.faust_timeout,
                cwd=datadir,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"n/a (no result within {config.faust_timeout:.0f} s)"
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"n/a (exit {done.returncode}: {tail[0][:80]})"
    answers = [
        line.partition(RESULT_MARK)[2]  # after any terminal control codes Faust writes
        for line in done.stdout.decode(errors="replace").splitlines()
        if RESULT_MARK in line
    ]
    if not answers:
        tail = done.stdout.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return f"n/a (no figure: {tail[0][:80]})"
    answer = json.loads(answers[-1])
    return float(answer["events"] / answer["seconds"])


def _faust_child(spec: dict[str, Any]) -> None:
    """The child's whole life: a Faust worker that times `count` events, prints, exits.

    It exits with `os._exit` as soon as it has its figure: Faust's orderly
    shutdown (leave group, flush changelogs) takes seconds and is not part of
    what is measured.
    """
    import faust  # only the child needs Faust; importing it is slow

    app = faust.App(
        spec["app_id"],
        broker=spec["broker"],
        store="memory://",
        topic_partitions=spec["partitions"],
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=spec["session_timeout"],
        broker_rebalance_timeout=spec["session_timeout"],
        broker_heartbeat_interval=min(1.0, spec["session_timeout"] / 4),
        web_enabled=False,
    )
    topic = app.topic(
        spec["topic"],
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec["partitions"],
    )
    count: int = spec["count"]
    clock = _Clock(count)

    if spec["mode"] == "bare":

        @app.agent(topic)
        async def bare(stream: Any) -> None:
            async for values in stream.take(spec["take"], within=spec["within"]):
                clock.tick(len(values))

    else:
        table = app.Table(
            "bench-counts", default=int, key_type=str, value_type=int, partitions=spec["partitions"]
        )

        @app.agent(topic)
        async def textbook(stream: Any) -> None:
            async for value in stream:
                event = parse_event(value)
                key = "dead" if isinstance(event, Rejection) else route(event)[1]
                table[key] = table[key] + 1
                clock.tick(1)

    worker = faust.Worker(app, loglevel="error", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


class _Clock:
    """Times events from the first delivery (start-up and group join excluded)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.first: tuple[float, int] | None = None

    def tick(self, n: int) -> None:
        self.seen += n
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, n)
        if self.seen >= self.count:
            started, before = self.first
            figure = {"events": self.seen - before, "seconds": max(now - started, 1e-9)}
            sys.stdout.write(RESULT_MARK + json.dumps(figure) + "\n")
            sys.stdout.flush()
            os._exit(0)


# --- the pipeline -------------------------------------------------------------


def _runtime_figures(
    base: Settings,
    records: Sequence[Record],
    steady: Sequence[Record],
    config: BenchConfig,
    runtime: str,
    measure_state: bool,
) -> tuple[RuntimeFigures, StateSize | None]:
    """One runtime's one-worker rate, latency and restart, each on a fresh run."""
    one, state = _pipeline(base, records, config.partitions, 1, measure_state, runtime=runtime)
    p50, p99 = _latency(base, steady, config, runtime)
    restart = _restart(base, records, config.partitions, runtime)
    return RuntimeFigures(one, p50, p99, restart), state


def _pipeline(
    base: Settings,
    records: Sequence[Record],
    partitions: int,
    workers: int,
    measure_state: bool,
    profile: Path | None = None,
    runtime: str | None = None,
) -> tuple[Figure, StateSize | None]:
    """Input events/s of `workers` workers over `records`, on fresh topics and keys
    (`runtime`: the workers' runtime, else the configured one)."""
    with replay_run(base, partitions=partitions, runtime=runtime or base.runtime) as run:
        run.delete_keys = True  # measured before the run ends; the next run starts clean
        asyncio.run(_publish(run, records))
        profiled = _spawn_profiled(run, profile) if profile is not None else None
        try:
            if profiled is None:
                for _ in range(workers):
                    run.start_worker()
            rate = asyncio.run(_watch(run, workers, len(records)))
            state = asyncio.run(_state_size(run)) if measure_state else None
        except TimeoutError as exc:
            return f"n/a ({exc})", None
        finally:
            if profiled is not None:
                _stop_profiled(profiled)
    return rate, state


async def _publish(run: ReplayRun, records: Sequence[Record]) -> None:
    """Create the run's topics and produce `records` to them (names get the run's prefix)."""
    settings = run.settings
    await ensure_topics(settings, run.endpoints.bootstrap)
    prefixed = [(settings.topic(t), k, v) for t, k, v in records]
    await _produce(run.endpoints.bootstrap, settings, prefixed)


async def _applied_inputs(run: ReplayRun, sink: RedisSink) -> int:
    """Input messages Redis recorded as applied (internal topics left out)."""
    inputs = {run.settings.topic(name) for name in INPUT_TOPICS}
    offsets = await sink.read_offsets()
    return sum(off + 1 for (topic, _), off in offsets.items() if topic in inputs)


async def _watch(run: ReplayRun, workers: int, total: int) -> Figure:
    """Input events/s from "every worker owns partitions and applied" to "all through"."""
    settings = run.settings
    sink = sink_for(settings, run.endpoints.redis_url)
    # the memory run's 1.8M events at 200k leads take longer than 600 s on a busy box
    deadline = time.monotonic() + RUN_TIMEOUT + total / SLOWEST_RATE

    try:
        owners_key = StateKeys(settings.key_prefix).owners
        while True:
            _check(deadline, run, "no worker started")
            owners = set((await sink.client.hgetall(owners_key)).values())
            before = await _applied_inputs(run, sink)
            if len(owners) >= workers and before > 0:
                started = time.monotonic()
                break
            await asyncio.sleep(0.02)
        while await _applied_inputs(run, sink) < total:
            _check(deadline, run, "input not applied")
            await asyncio.sleep(0.02)
        finished = await _settled(run, sink, deadline)
    finally:
        await sink.close()
    if before >= total:
        return f"n/a (the first batch held all {total} events; use more --events)"
    return (total - before) / (finished - started)


async def _settled(run: ReplayRun, sink: RedisSink, deadline: float) -> float:
    """When the internal topics and the outbox were through (first of two checks in a row)."""
    topics = {run.settings.topic(name): run.settings.partitions for name in CONSUMED}
    first: float | None = None
    async with EndOffsets(run.endpoints.bootstrap, topics) as ends:
        while True:
            _check(deadline, run, "internal topics not applied")
            now = time.monotonic()
            end = await ends.read()
            applied = await sink.read_offsets()
            done = all(applied.get(tp, -1) >= e - 1 for tp, e in end.items() if e > 0)
            if done and await sink.outbox_length() == 0:
                if first is not None:
                    return first
                first = now
            else:
                first = None
            await asyncio.sleep(0.02)


def _restart(base: Settings, records: Sequence[Record], partitions: int, runtime: str) -> Figure:
    """Seconds from a replacement worker's spawn until Redis's applied input offsets
    move again, after the run's only worker was SIGKILLed in the middle of the
    file's backlog (right after its first applied batch)."""
    with replay_run(base, partitions=partitions, runtime=runtime) as run:
        run.delete_keys = True
        asyncio.run(_publish(run, records))
        victim = run.start_worker()
        try:
            return asyncio.run(_replaced(run, victim, len(records)))
        except TimeoutError as exc:
            return f"n/a ({exc})"


async def _replaced(run: ReplayRun, victim: subprocess.Popen[bytes], total: int) -> Figure:
    """Kill `victim` once it applied a batch; time its replacement's first batch.

    The baseline offsets are read 0.2 s after the kill (not timed), so a Lua
    call the victim sent just before dying has landed and is not taken for
    the replacement's.
    """
    sink = sink_for(run.settings, run.endpoints.redis_url)
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while not await _applied_inputs(run, sink):
            _check(deadline, run, "no batch applied")
            await asyncio.sleep(0.02)
        victim.kill()
        victim.wait()
        await asyncio.sleep(0.2)
        before = await _applied_inputs(run, sink)
        if before >= total:
            return f"n/a (the first batches held all {total} events; use more --events)"
        spawned = time.monotonic()
        run.start_worker()
        while await _applied_inputs(run, sink) == before:
            _check(deadline, run, "replacement applied nothing")
            await asyncio.sleep(0.02)
        return time.monotonic() - spawned
    finally:
        await sink.close()


def _check(deadline: float, run: ReplayRun, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{what} in time; {run.worker_logs(300)!r}")


async def _state_size(run: ReplayRun) -> StateSize:
    """Bytes per lead of the run's state keys (MEMORY USAGE, exact: SAMPLES 0)."""
    sink = sink_for(run.settings, run.endpoints.redis_url)
    client = sink.client
    keys = StateKeys(run.settings.key_prefix)
    prefix = run.settings.key_prefix
    try:
        lead_hash = keys.subjects("lead")
        leads = int(await client.hlen(lead_hash))
        lengths = 0
        async for _, value in client.hscan_iter(lead_hash, count=1000):
            lengths += len(value)

        async def usage(pattern: str) -> int:
            names = [k async for k in client.scan_iter(match=pattern, count=1000)]
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.memory_usage(name, samples=0)
                return sum(int(v or 0) for v in await pipe.execute())

        lead_bytes = await usage(lead_hash)
        state_bytes = await usage(f"{prefix}state:*")
        derived = await usage(f"{prefix}contrib:*") + await usage(f"{prefix}credit:*")
        series = await usage(f"{prefix}d:*")
        totals = await usage(f"{prefix}m:*")
    finally:
        await sink.close()
    n = max(leads, 1)
    rss = [_peak_rss(worker.pid) for worker in run.workers]
    return StateSize(
        leads,
        lengths / n,
        lead_bytes / n,
        state_bytes / n,
        derived / n,
        series_bytes=series / n,
        metric_bytes=totals / n,
        worker_peak_rss=max((r for r in rss if r is not None), default=None),
    )


def _peak_rss(pid: int) -> int | None:
    """A live process's peak resident memory in bytes (Linux's VmHWM), if known."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def _spawn_profiled(run: ReplayRun, out: Path) -> subprocess.Popen[bytes]:
    """A worker started under `py-spy record` (attaching to a running process needs
    ptrace rights a container rarely grants; a child of py-spy needs none)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    env = {
        **os.environ,
        **settings_env(run.settings),
        "PP_BROKER": run.endpoints.broker,
        "PP_REDIS_URL": run.endpoints.redis_url,
    }
    command = [py_spy, "record", "--format", "raw", "--rate", "200", "--output", str(out), "--"]
    command += [sys.executable, "-m", "streams.cli", "worker"]
    with (run.logs / "worker-profiled.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - py-spy and our own worker
            command, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def _stop_profiled(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker (not py-spy), so py-spy sees it exit and writes its file."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    with contextlib.suppress(OSError):
        for pid in children.read_text().split():
            os.kill(int(pid), signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        stop_worker(process)


def profile_top(path: Path, n: int = 15) -> list[str]:
    """The `n` functions with the most samples in py-spy's raw output, self and inclusive.

    Line numbers are dropped so that a function's samples add up.  Inclusive
    figures count only the batch handling (`Worker._handle` and below); the
    totals include the worker's start-up (imports) and its outbox forwarder.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        if _HANDLE in frames:
            for frame in set(frames[frames.index(_HANDLE) :]):
                inclusive[frame] += samples
    out = [f"profile: {total:,} samples; self"]
    out += [f"  {k / total:6.1%}  {f}" for f, k in own.most_common(n)]
    out.append("profile: inclusive (below Worker._handle)")
    out += [f"  {k / total:6.1%}  {f}" for f, k in inclusive.most_common(n)]
    return out


# --- latency ------------------------------------------------------------------


def _latency(
    base: Settings, records: Sequence[Record], config: BenchConfig, runtime: str
) -> tuple[Figure, Figure]:
    """p50/p99 ms from `send()` to offset applied, at `config.rate` events/s."""
    with replay_run(base, partitions=config.partitions, runtime=runtime) as run:
        run.delete_keys = True
        asyncio.run(_publish(run, []))
        run.start_worker()
        try:
            latencies = asyncio.run(_steady(run, records, config.rate))
        except TimeoutError as exc:
            return f"n/a ({exc})", f"n/a ({exc})"
    quantiles = statistics.quantiles(latencies, n=100)
    return statistics.median(latencies) * 1000, quantiles[98] * 1000


async def _steady(run: ReplayRun, records: Sequence[Record], rate: float) -> list[float]:
    """Produce `records` at `rate`/s into the joined worker; watch Redis meanwhile.

    Sends are paced in 2 ms ticks and batched by the producer (`linger_ms`),
    never awaited one by one; each event's clock starts at its `send()` call,
    so producer batching counts against the pipeline, as it would for a client.
    """
    settings = run.settings
    sink = sink_for(settings, run.endpoints.redis_url)
    deadline = time.monotonic() + RUN_TIMEOUT
    history: dict[tuple[str, int], tuple[list[float], list[int]]] = {}
    """(topic, partition) -> (times, applied offset at that time), as polled."""
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            offsets = await sink.read_offsets()
            now = time.monotonic()
            for tp, off in offsets.items():
                times, values = history.setdefault(tp, ([], []))
                if not values or values[-1] != off:
                    times.append(now)
                    values.append(off)
            await asyncio.sleep(0.005)

    producer = AIOKafkaProducer(
        bootstrap_servers=run.endpoints.bootstrap,
        linger_ms=5,
        acks="all",
        **settings.aiokafka_security(),
    )
    owners_key = StateKeys(settings.key_prefix).owners
    try:
        while not await sink.client.hlen(owners_key):
            _check(deadline, run, "worker did not join")
            await asyncio.sleep(0.05)
        await producer.start()
        poller = asyncio.create_task(poll())
        sent: list[tuple[asyncio.Future[Any], float]] = []
        started = time.monotonic()
        while len(sent) < len(records):
            due = min(len(records), int((time.monotonic() - started) * rate) + 1)
            for topic, key, value in records[len(sent) : due]:
                at = time.monotonic()
                sent.append((await producer.send(settings.topic(topic), value, key=key), at))
            await asyncio.sleep(0.002)
        await producer.flush()
        wanted = [(await future, at) for future, at in sent]
        latencies: list[float] = []
        for meta, at in wanted:
            tp = (meta.topic, meta.partition)
            while not history.get(tp) or history[tp][1][-1] < meta.offset:
                _check(deadline, run, "steady events not applied")
                await asyncio.sleep(0.05)
            times, values = history[tp]
            latencies.append(times[bisect.bisect_left(values, meta.offset)] - at)
        stop.set()
        await poller
    finally:
        stop.set()
        await producer.stop()
        await sink.close()
    return latencies


# --- batch oracle and state size ------------------------------------------------


def _recompute_rate(path: Path) -> float:
    """Lines/s of `recompute --json` over the bench file, in this process (the
    command's own code path, so start-up and imports are left out)."""
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    started = time.perf_counter()
    engine = run_file(path, EngineConfig(), DEFAULT_MAX_BYTES)[0]
    json_document(engine.totals, engine.credits())
    return lines / (time.perf_counter() - started)


def codec_size(leads: int, redis_url: str, chunk: int = 100_000) -> CodecSize:
    """Encode the state of `leads` generated leads with the worker's codec.

    Generated and run through the engine in chunks of `chunk` leads (distinct
    seeds: each chunk is a small independent company), so memory stays
    bounded; each chunk's encoded lead states are loaded into a scratch Redis
    hash once, to measure Redis's own bytes per entry, and deleted.
    """
    compress = Settings().state_compression  # read once: it parses the environment
    started = time.perf_counter()
    sizes: list[int] = []
    opportunity_bytes = 0
    redis_bytes = 0
    for n, first in enumerate(range(0, leads, chunk)):
        engine = Engine()
        with gc_paused(freeze=False):  # the collector took 14 s of 36 s per 100k leads
            items = generate(SyntheticConfig(seed=1000 + n, leads=min(chunk, leads - first)))
            engine.run(parse_event(orjson.dumps(i)) for i in items if not isinstance(i, str))
        encoded = {k: codec.dump_lead(s) for k, s in engine.leads.items()}
        sizes += [len(v) for v in encoded.values()]
        stored = {k: pack(v, compress) for k, v in encoded.items()}
        opportunity_bytes += sum(
            len(codec.dump_opportunity(s)) for s in engine.opportunities.values()
        )
        redis_bytes += asyncio.run(_redis_bytes(redis_url, stored))
    sizes.sort()
    return CodecSize(
        len(sizes),
        statistics.fmean(sizes),
        sizes[int(len(sizes) * 0.99)],
        sizes[-1],
        opportunity_bytes / len(sizes),
        redis_bytes / len(sizes),
        time.perf_counter() - started,
    )


async def series_scale(redis_url: str, partners: int, campaigns: int, channels: int) -> SeriesScale:
    """Write a year (2026) of every series metric in the sink's layout, measure it, read it.

    Dense on purpose: `all`, `partners`, every partner and channel has a value
    on every day of the year for every metric, every campaign on every day of
    its quarter.  Values are counts (1-50) or ARR cents (up to 10^7), as
    integers the sink writes.  The keys are deleted afterwards.
    """
    sink = RedisSink.from_url(redis_url, prefix=f"pp:bench:{uuid.uuid4().hex[:10]}:")
    calendar, rng = Calendar(), random.Random(11)  # noqa: S311 (test data, not secrets)
    partner_scopes = ["partners", *(f"partner:p{n:02d}" for n in range(partners))]
    scopes: list[tuple[str, Window]] = [
        (scope, calendar.period("2026"))
        for scope in ["all", *partner_scopes, *(f"channel:c{n:02d}" for n in range(channels))]
    ]
    scopes += [
        (f"campaign:2026q{n % 4 + 1}_ptnr_p{n:03d}", calendar.period(f"2026Q{n % 4 + 1}"))
        for n in range(campaigns)
    ]
    names: list[str] = []
    fields = 0
    try:
        for scope, window in scopes:
            days = window_days(window)
            async with sink.client.pipeline(transaction=False) as pipe:
                for metric in sorted(SERIES_METRICS):
                    top = 10**7 if metric.endswith("_arr") else 50
                    key = sink.keys.series(scope, metric)
                    pipe.hset(key, mapping={day: rng.randint(1, top) for day in days})
                    names.append(key)
                    fields += len(days)
                await pipe.execute()
        async with sink.client.pipeline(transaction=False) as pipe:
            for key in names:
                pipe.memory_usage(key, samples=0)
            size = sum(int(v or 0) for v in await pipe.execute())
        quarter, timings = calendar.period("2026Q3"), []
        for _ in range(5):
            started = time.perf_counter()
            await read_window(sink, partner_scopes, NB_EX, quarter)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        for i in range(0, len(names), 500):
            await sink.client.unlink(*names[i : i + 500])
        await sink.close()
    return SeriesScale(
        partners,
        campaigns,
        channels,
        len(names),
        fields,
        size,
        len(partner_scopes) * len(NB_EX),
        statistics.median(timings),
    )


async def _redis_bytes(redis_url: str, values: dict[str, bytes]) -> int:
    """MEMORY USAGE of a scratch hash holding `values` (deleted afterwards)."""
    sink = RedisSink.from_url(redis_url, prefix=f"pp:bench:{uuid.uuid4().hex[:10]}:")
    key = StateKeys(sink.keys.prefix).subjects("lead")
    try:
        items = list(values.items())
        for i in range(0, len(items), 5000):
            await sink.client.hset(key, mapping=dict(items[i : i + 5000]))
        return int(await sink.client.memory_usage(key, samples=0) or 0)
    finally:
        await sink.client.unlink(key)
        await sink.close()


if __name__ == "__main__":
    _faust_child(json.loads(sys.argv[1]))
