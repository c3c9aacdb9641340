"""The `partnerpulse` console script."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import IO

import click
import orjson
from rich.console import Console
from rich.table import Table

from datagen import DEFAULT_START, SyntheticConfig
from datagen import generate as synthesise
from datagen.crm import CrmExport
from datagen.crm import convert as convert_export
from models.config import EngineConfig
from models.engine import Engine
from models.events import Event, to_micros
from models.output import render, render_value
from models.parse import DEFAULT_MAX_BYTES, Rejection, parse_event
from models.periods import Calendar, Window, window_totals
from models.report import build_report, parse_as_of, rich_tables
from models.subject import MetricKey
from streams.settings import Settings

# The streaming commands import `streams.runtime` (Faust, aiokafka, aiohttp)
# inside their functions: that import is half a second, and `recompute` and
# `generate` need none of it.

HEADLINE = (
    ("nb.leads.influenced", "NB leads"),
    ("nb.mqls.influenced", "NB MQLs"),
    ("nb.s2.influenced", "NB S2"),
    ("nb.s2.attributed_arr", "NB S2 attr. ARR"),
    ("nb.cw.influenced", "NB won"),
    ("nb.cw.attributed_arr", "NB won attr. ARR"),
    ("ex.s2.influenced", "EX S2"),
    ("ex.cw.attributed_arr", "EX won attr. ARR"),
)


def read_jsonl(path: Path, config: EngineConfig, max_bytes: int) -> Iterator[Event | Rejection]:
    """Parse a `.jsonl` file line by line, exactly as messages from Kafka are parsed."""
    with path.open("rb") as handle:
        for line in handle:
            raw = line.rstrip(b"\r\n")
            if raw.strip():
                yield parse_event(raw, max_bytes=max_bytes, currencies=config.currencies)


@contextlib.contextmanager
def gc_paused(freeze: bool = True) -> Iterator[None]:
    """Run a batch computation without the cyclic garbage collector.

    The engine keeps hundreds of thousands of long-lived objects and makes
    (almost) no reference cycles, so the collector's repeated scans of that
    growing heap free nothing; they were about a third of `recompute`'s time.
    Reference counting still frees everything else as usual.  On the way out
    the survivors are frozen (moved out of the collector's generations):
    otherwise the first collection after re-enabling scans all of them once
    more, which alone cost half a second on 200k events.  A caller that drops
    its engine afterwards (and runs another) passes `freeze=False`: frozen
    objects are never collected.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def engine_config(model: str, mapping: str) -> EngineConfig:
    """The engine settings of the environment (`PP_*`), with this command's model and mapping."""
    return Settings().engine.model_copy(update={"model": model, "mapping": mapping})


model_option = click.option(
    "--model",
    type=click.Choice(["w-shaped", "full-path"]),
    default="w-shaped",
    show_default=True,
    help="Opportunity attribution model.",
)


def _choose_embedded_broker(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> None:
    """The flag is `PP_EMBEDDED_BROKER`: set it for every `Settings` read in this process."""
    if value is not None:
        os.environ["PP_EMBEDDED_BROKER"] = value


def _choose_runtime(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """The flag is `PP_RUNTIME`: set it for this process and the workers it starts."""
    if value is not None:
        os.environ["PP_RUNTIME"] = value


runtime_option = click.option(
    "--runtime",
    type=click.Choice(["aiokafka", "faust"]),
    default=None,
    expose_value=False,
    callback=_choose_runtime,
    help="The workers' consumer loop [default: PP_RUNTIME, aiokafka].",
)
embedded_broker_option = click.option(
    "--embedded-broker",
    type=click.Choice(["tansu", "apache-kafka"]),
    default=None,
    expose_value=False,
    callback=_choose_embedded_broker,
    help="Local broker started when PP_BROKER is unset [default: PP_EMBEDDED_BROKER, tansu].",
)
mapping_option = click.option(
    "--mapping",
    type=click.Choice(["contact-role", "account"]),
    default="contact-role",
    show_default=True,
    help="Which leads' touchpoints an opportunity pools.",
)


# --- windows (SPEC §4.1, §6): --period, --from, --to ---------------------------


def window_options(command: Callable[..., None]) -> Callable[..., None]:
    """`--period` or `--from`/`--to`: restrict the metrics to a window of UTC days."""
    options = (
        click.option(
            "--period",
            help="A fiscal period: 2026Q3, 2026-07 or 2026 (fiscal year start: "
            "PP_FISCAL_YEAR_START, default January).",
        ),
        click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First day."),
        click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last day."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def window_of(period: str | None, first: datetime | None, last: datetime | None) -> Window | None:
    """The window the options name (inclusive UTC days); None for the whole history."""
    if period is not None and (first or last):
        raise click.UsageError("give --period or --from/--to, not both")
    if (first is None) != (last is None):
        raise click.UsageError("give both --from and --to")
    try:
        if period is not None:
            return calendar().period(period)
        if first is None or last is None:
            return None
        return Window(first.date(), last.date())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def calendar() -> Calendar:
    """The fiscal calendar of the environment (`PP_FISCAL_YEAR_START`)."""
    return Calendar(Settings().fiscal_year_start)


@click.group()
def main() -> None:
    """PartnerPulse: live W-shaped partner attribution from Kafka to Redis."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the SPEC §6 JSON document.")
@model_option
@mapping_option
@click.option("--max-bytes", default=DEFAULT_MAX_BYTES, show_default=True)
@window_options
def recompute(
    file: Path,
    as_json: bool,
    model: str,
    mapping: str,
    max_bytes: int,
    period: str | None,
    first: datetime | None,
    last: datetime | None,
) -> None:
    """Batch oracle: final metrics and credits of FILE, no broker needed.

    Without --json it prints the `report` tables of FILE as of its latest event.
    With a window, `metrics` holds each metric with a series summed over the
    window's days (the others are left out); `series` stays whole.
    """
    window = window_of(period, first, last)
    engine, latest = run_file(file, engine_config(model, mapping), max_bytes)
    if as_json:
        sys.stdout.buffer.write(json_document(engine.totals, engine.credits(), window))
        return
    print_tables(rich_tables(build_report(engine.totals, latest, window)))


def run_file(file: Path, config: EngineConfig, max_bytes: int) -> tuple[Engine, int]:
    """The engine after FILE, and the latest event time in it (0 for none); streams the file."""
    latest = 0

    def noting_latest() -> Iterator[Event | Rejection]:
        nonlocal latest
        for item in read_jsonl(file, config, max_bytes):
            if not isinstance(item, Rejection):
                latest = max(latest, item.ts)
            yield item

    engine = Engine(config)
    with gc_paused():
        engine.run(noting_latest())
    return engine, latest


def print_tables(tables: list[Table]) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped output: never truncate the numbers
    for table in tables:
        console.print(table)


@main.command()
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Compute the report from a .jsonl file with the engine instead of reading Redis.",
)
@click.option("--redis", "redis_url", help="Redis URL [default: PP_REDIS_URL, else local].")
@click.option("--prefix", help="Redis key prefix [default: PP_KEY_PREFIX, else pp:].")
@click.option(
    "--as-of",
    "as_of",
    help="Date goal pace is measured at (ISO, UTC) [default: the file's latest event, "
    "or now for Redis].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@model_option
@mapping_option
@click.option("--max-bytes", default=DEFAULT_MAX_BYTES, show_default=True)
@window_options
@click.option(
    "--compare", is_flag=True, help="Show the previous period of the same length beside it."
)
def report(
    file: Path | None,
    redis_url: str | None,
    prefix: str | None,
    as_of: str | None,
    as_json: bool,
    model: str,
    mapping: str,
    max_bytes: int,
    period: str | None,
    first: datetime | None,
    last: datetime | None,
    compare: bool,
) -> None:
    """Partner report: New Business / Expansion funnel per partner, then the scorecard.

    Reads the running totals from Redis (read only), or computes them from FILE.
    With --period or --from/--to it counts only that window's days; --compare
    adds the previous period (the quarter before a quarter, else as many days
    just before) and the change.  Goals are measured over their own periods.
    """
    window = window_of(period, first, last)
    if compare and window is None:
        raise click.UsageError("--compare needs --period or --from/--to")
    if file is not None:
        engine, latest = run_file(file, engine_config(model, mapping), max_bytes)
        totals = engine.totals
    else:
        from sinks.redis_sink import SinkUnavailableError

        settings = Settings()
        url = redis_url or settings.redis_url or LOCAL_REDIS
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        try:
            totals = asyncio.run(read_totals(url, password, prefix or settings.key_prefix))
        except SinkUnavailableError as exc:
            raise click.ClickException(str(exc)) from exc
        latest = to_micros(datetime.now(UTC))
    previous = calendar().previous(window) if compare and window is not None else None
    document = build_report(totals, parse_as_of(as_of) if as_of else latest, window, previous)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print_tables(rich_tables(document))


LOCAL_REDIS = "redis://127.0.0.1:6379"


async def read_totals(url: str, password: str | None, prefix: str) -> dict[MetricKey, int]:
    """The running totals under `prefix` (bounded wait: a report must not hang)."""
    from sinks.redis_sink import RedisSink

    sink = RedisSink.from_url(url, password, prefix=prefix, max_wait=10.0)
    try:
        return await sink.read_metrics()
    finally:
        await sink.close()


def json_document(
    totals: Mapping[MetricKey, int],
    credits: Mapping[str, Mapping[str, Fraction]],
    window: Window | None = None,
) -> bytes:
    """The SPEC §6 document of the totals (seen through `window`, if any) and credits."""
    document = render(window_totals(totals, window), credits)
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def print_partner_table(totals: dict[tuple[str, str], int]) -> None:
    """Headline New Business / Expansion numbers per partner (cents shown as dollars)."""
    table = Table(title="Partner-influenced pipeline (ARR in reporting currency)")
    table.add_column("scope", no_wrap=True)
    for _, label in HEADLINE:
        table.add_column(label, justify="right", no_wrap=True)
    scopes = sorted({s for s, _ in totals if s == "all" or s.startswith("partner:")})
    for scope in scopes:
        cells = []
        for metric, _ in HEADLINE:
            value = render_value(metric, totals.get((scope, metric), 0))
            cells.append(f"{value / 100:,.2f}" if metric.endswith("_arr") else f"{value:,}")
        table.add_row(scope, *cells)
    print_tables([table])


@main.command()
@click.option(
    "--out", "out", type=click.File("w"), default="-", help="Output file (default stdout)."
)
@click.option("--seed", default=1, show_default=True)
@click.option("--leads", default=1000, show_default=True, help="Number of leads.")
@click.option("--days", default=180, show_default=True, help="Span of event time.")
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=DEFAULT_START.isoformat(),
    show_default=True,
    help="First day of event time (UTC).",
)
@click.option("--duplicates", default=0.0, show_default=True, help="Fraction re-delivered.")
@click.option("--shuffle", default=0.0, show_default=True, help="Fraction out of order (0..1).")
@click.option("--invalid", default=0.0, show_default=True, help="Fraction of malformed lines.")
def generate(
    out: IO[str],
    seed: int,
    leads: int,
    days: int,
    start: datetime,
    duplicates: float,
    shuffle: float,
    invalid: float,
) -> None:
    """Write a realistic synthetic event stream as .jsonl."""
    items = synthesise(
        SyntheticConfig(
            seed=seed,
            leads=leads,
            days=days,
            start=start.date(),
            duplicates=duplicates,
            shuffle=shuffle,
            invalid=invalid,
        )
    )
    for item in items:
        out.write(item if isinstance(item, str) else orjson.dumps(item).decode())
        out.write("\n")


@main.command()
@click.option("--rate", default=300.0, show_default=True, help="Events per second fed.")
@click.option(
    "--duration", default=0.0, show_default=True, help="Seconds to run; 0 = until Ctrl-C."
)
@click.option("--host", default=None, help="Dashboard address [default: PP_WEB_HOST, 127.0.0.1].")
@click.option(
    "--port", type=int, default=None, help="Dashboard port, 0 = any [default: PP_WEB_PORT, 6066]."
)
@click.option("--seed", default=1, show_default=True, help="Seed of the synthetic feed.")
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a browser.")
@click.option("--keep", is_flag=True, help="Keep the demo's Redis keys on exit.")
@click.option(
    "--events",
    default=0,
    show_default=True,
    help="Stop the live feed after N events past the history (0: never).",
)
@embedded_broker_option
@runtime_option
def demo(
    rate: float,
    duration: float,
    host: str | None,
    port: int | None,
    seed: int,
    open_browser: bool,
    keep: bool,
    events: int,
) -> None:
    """Broker, worker, a live synthetic feed and the dashboard, on embedded defaults.

    Uses PP_BROKER / PP_REDIS_URL when set, else starts its own. Its topics,
    consumer group and Redis keys are its own (removed on exit unless --keep).
    """
    if rate <= 0:
        raise click.BadParameter("must be > 0", param_hint="--rate")
    from streams.demo import run_demo

    settings = Settings()
    run_demo(
        settings,
        rate=rate,
        duration=duration,
        host=host or settings.web_host,
        port=settings.web_port if port is None else port,
        seed=seed,
        keep=keep,
        open_browser=open_browser,
        console=Console(stderr=True),
        events=events,
    )


def read_csv(path: Path | None) -> list[dict[str, str]]:
    """Rows of a CRM export (UTF-8, with or without a BOM); none when not given."""
    if path is None:
        return []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


csv_option = click.Path(exists=True, dir_okay=False, path_type=Path)


@main.command()
@click.option("--leads", type=csv_option, help="Lead export (CSV).")
@click.option("--campaign-members", type=csv_option, help="CampaignMember export (CSV).")
@click.option("--opportunities", type=csv_option, help="Opportunity export (CSV).")
@click.option("--contact-roles", type=csv_option, help="OpportunityContactRole export (CSV).")
@click.option(
    "--out", "out", type=click.File("w"), default="-", help="Output .jsonl (default stdout)."
)
def convert(
    leads: Path | None,
    campaign_members: Path | None,
    opportunities: Path | None,
    contact_roles: Path | None,
    out: IO[str],
) -> None:
    """Convert Salesforce CSV exports to PartnerPulse events (.jsonl) for `send`.

    Column mapping: docs/crm-import.md. Rows that cannot become events are
    counted by reason on stderr; every event written is validated.
    """
    result = convert_export(
        CrmExport(
            read_csv(leads),
            read_csv(campaign_members),
            read_csv(opportunities),
            read_csv(contact_roles),
        )
    )
    invalid: Counter[str] = Counter()
    for event in result.events:
        raw = orjson.dumps(event)
        parsed = parse_event(raw)
        if isinstance(parsed, Rejection):
            invalid[f"{event['type']}: {parsed.reason}"] += 1
        else:
            out.write(raw.decode() + "\n")
    click.echo(f"events: {len(result.events) - invalid.total()}", err=True)
    for reason, count in sorted(result.skipped.items()):
        click.echo(f"skipped {count}: {reason}", err=True)
    if invalid:
        details = ", ".join(f"{count} {reason}" for reason, count in sorted(invalid.items()))
        raise click.ClickException(f"rows that are not valid events (not written): {details}")


@main.command()
@embedded_broker_option
@runtime_option
def worker() -> None:
    """Run a worker (configured by PP_* environment variables)."""
    from streams.runtime import infrastructure, run_worker

    with infrastructure(Settings()) as (settings, endpoints):
        if settings.broker is None:
            click.echo(f"embedded broker: {endpoints.broker}", err=True)
        run_worker(settings, endpoints)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def send(file: Path) -> None:
    """Publish the events of FILE to their topics (PP_BROKER must be set).

    Lines that are not valid events are published too, so the worker
    dead-letters and counts them exactly as `recompute` does.
    """
    from streams.runtime import Endpoints, send_file

    settings = Settings()
    if settings.broker is None:
        raise click.UsageError("set PP_BROKER to the broker to publish to")
    endpoints = Endpoints(settings.broker, settings.redis_url or "")
    counts = asyncio.run(send_file(file, settings, endpoints.bootstrap))
    for topic, count in sorted(counts.items()):
        click.echo(f"{topic}: {count}", err=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the SPEC §6 JSON document.")
@model_option
@mapping_option
@click.option("--partitions", default=4, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait.")
@click.option("--keep", is_flag=True, help="Keep the run's Redis keys.")
@window_options
@embedded_broker_option
@runtime_option
def replay(
    file: Path,
    as_json: bool,
    model: str,
    mapping: str,
    partitions: int,
    workers: int,
    timeout: float,
    keep: bool,
    period: str | None,
    first: datetime | None,
    last: datetime | None,
) -> None:
    """Run FILE through broker → workers → Redis and print what Redis holds.

    Each run uses its own topics, consumer group and Redis key prefix, so it
    never mixes with other data.  A window restricts `metrics` as `recompute` does.
    """
    from streams.runtime import replay_run

    window = window_of(period, first, last)

    with replay_run(Settings(), partitions=partitions, model=model, mapping=mapping) as run:
        run.send(file)
        for _ in range(workers):
            run.start_worker()
        try:
            totals, credits = run.collect(timeout, keep)
        except TimeoutError:
            click.echo(run.worker_logs(), err=True)
            raise
    if as_json:
        sys.stdout.buffer.write(json_document(totals, credits, window))
    else:
        print_partner_table(window_totals(totals, window))


@main.command()
@click.option("--events", default=50_000, show_default=True, help="Events in the file.")
@click.option("--partitions", default=8, show_default=True)
@click.option("--rate", default=2000.0, show_default=True, help="Events/s in the latency run.")
@click.option("--seconds", default=10.0, show_default=True, help="Length of the latency run.")
@click.option("--repeat", default=3, show_default=True, help="Repetitions (medians shown).")
@click.option(
    "--faust-timeout", default=120.0, show_default=True, help="Seconds per Faust baseline."
)
@click.option(
    "--state-leads",
    default=0,
    show_default=True,
    help="Also encode this many generated leads' states (e.g. 1000000).",
)
@click.option(
    "--memory-leads",
    default=0,
    show_default=True,
    help="One more 1-worker run over this many generated leads (worker RSS, Redis bytes).",
)
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="One extra 1-worker run under py-spy; raw stacks written here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--series-scale",
    default=(50, 500, 20),
    type=(int, int, int),
    show_default=True,
    help="Partners, campaigns, channels of a synthetic year of series (0 0 0: skip).",
)
@embedded_broker_option
@runtime_option
def bench(
    events: int,
    partitions: int,
    rate: float,
    seconds: float,
    repeat: int,
    faust_timeout: float,
    state_leads: int,
    memory_leads: int,
    profile: Path | None,
    as_json: bool,
    series_scale: tuple[int, int, int],
) -> None:
    """Measure the pipeline beside raw aiokafka and Faust baselines, in one run.

    Progress goes to stderr; the table (or JSON) to stdout.
    """
    from benchmarks.bench import BenchConfig, run_bench

    config = BenchConfig(
        events,
        partitions,
        rate,
        seconds,
        repeat,
        faust_timeout,
        state_leads,
        memory_leads,
        profile,
        series_scale,
    )
    with tempfile.TemporaryDirectory() as workdir:
        result = run_bench(config, Path(workdir), lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
        return
    for line in result.lines():
        click.echo(line)


if __name__ == "__main__":
    main()
