"""The `partnerpulse` console script."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click
import orjson
from rich.console import Console
from rich.table import Table

from models.config import EngineConfig
from models.engine import Engine
from models.events import Event
from models.output import render, render_value
from models.parse import DEFAULT_MAX_BYTES, Rejection, parse_event
from models.synthetic import SyntheticConfig
from models.synthetic import generate as synthesise
from streams.bench import BenchConfig, run_bench
from streams.runtime import Endpoints, infrastructure, replay_run, run_worker, send_file
from streams.settings import Settings

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


def engine_config(model: str, mapping: str) -> EngineConfig:
    return EngineConfig(model=model, mapping=mapping)  # type: ignore[arg-type]


model_option = click.option(
    "--model",
    type=click.Choice(["w-shaped", "full-path"]),
    default="w-shaped",
    show_default=True,
    help="Opportunity attribution model.",
)
mapping_option = click.option(
    "--mapping",
    type=click.Choice(["contact-role", "account"]),
    default="contact-role",
    show_default=True,
    help="Which leads' touchpoints an opportunity pools.",
)


@click.group()
def main() -> None:
    """PartnerPulse: live W-shaped partner attribution from Kafka to Redis."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the SPEC §6 JSON document.")
@model_option
@mapping_option
@click.option("--max-bytes", default=DEFAULT_MAX_BYTES, show_default=True)
def recompute(file: Path, as_json: bool, model: str, mapping: str, max_bytes: int) -> None:
    """Batch oracle: final metrics and credits of FILE, no broker needed."""
    config = engine_config(model, mapping)
    engine = Engine(config)
    engine.run(read_jsonl(file, config, max_bytes))
    if as_json:
        sys.stdout.buffer.write(
            orjson.dumps(render(engine.totals, engine.credits()), option=orjson.OPT_INDENT_2)
            + b"\n"
        )
        return
    print_partner_table(engine.totals)


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
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped output: never truncate the numbers
    console.print(table)


@main.command()
@click.option(
    "--out", "out", type=click.File("w"), default="-", help="Output file (default stdout)."
)
@click.option("--seed", default=1, show_default=True)
@click.option("--leads", default=1000, show_default=True, help="Number of leads.")
@click.option("--days", default=180, show_default=True, help="Span of event time.")
@click.option("--duplicates", default=0.0, show_default=True, help="Fraction re-delivered.")
@click.option("--shuffle", default=0.0, show_default=True, help="Fraction out of order (0..1).")
@click.option("--invalid", default=0.0, show_default=True, help="Fraction of malformed lines.")
def generate(
    out: IO[str],
    seed: int,
    leads: int,
    days: int,
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
            duplicates=duplicates,
            shuffle=shuffle,
            invalid=invalid,
        )
    )
    for item in items:
        out.write(item if isinstance(item, str) else orjson.dumps(item).decode())
        out.write("\n")


@main.command()
def worker() -> None:
    """Run a worker (configured by PP_* environment variables)."""
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
@click.option("--partitions", default=4, show_default=True)
@click.option("--workers", default=1, show_default=True, help="Worker processes.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait.")
@click.option("--keep", is_flag=True, help="Keep the run's Redis keys.")
def replay(
    file: Path, as_json: bool, model: str, partitions: int, workers: int, timeout: float, keep: bool
) -> None:
    """Run FILE through broker → workers → Redis and print what Redis holds.

    Each run uses its own topics, consumer group and Redis key prefix, so it
    never mixes with other data.
    """
    with replay_run(Settings(), partitions=partitions, model=model) as run:
        run.send(file)
        for _ in range(workers):
            run.start_worker()
        try:
            totals, credits = run.collect(timeout, keep)
        except TimeoutError:
            click.echo(run.worker_logs(), err=True)
            raise
    if as_json:
        sys.stdout.buffer.write(
            orjson.dumps(render(totals, credits), option=orjson.OPT_INDENT_2) + b"\n"
        )
    else:
        print_partner_table(totals)


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
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="One extra 1-worker run under py-spy; raw stacks written here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def bench(
    events: int,
    partitions: int,
    rate: float,
    seconds: float,
    repeat: int,
    faust_timeout: float,
    state_leads: int,
    profile: Path | None,
    as_json: bool,
) -> None:
    """Measure the pipeline beside raw aiokafka and Faust baselines, in one run.

    Progress goes to stderr; the table (or JSON) to stdout.
    """
    config = BenchConfig(
        events, partitions, rate, seconds, repeat, faust_timeout, state_leads, profile
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
