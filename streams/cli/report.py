"""`partnerpulse report`: the partner report, from Redis or computed from a file."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson

from models.events import to_micros
from models.report import TABLES, build_report, parse_as_of, rich_tables, to_csv
from models.subject import MetricKey
from streams.cli.common import (
    EngineOptions,
    calendar,
    engine_options,
    input_file,
    print_tables,
)
from streams.settings import Settings

LOCAL_REDIS = "redis://127.0.0.1:6379"


@click.command()
@click.option(
    "--file",
    "file",
    type=input_file,
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
@click.option(
    "--csv",
    "csv_table",
    type=click.Choice(TABLES),
    help="Print that table as CSV instead (ARR in cents, rates as fractions).",
)
@engine_options
@click.option(
    "--compare", is_flag=True, help="Show the previous period of the same length beside it."
)
def report(
    file: Path | None,
    redis_url: str | None,
    prefix: str | None,
    as_of: str | None,
    as_json: bool,
    csv_table: str | None,
    options: EngineOptions,
    compare: bool,
) -> None:
    """Partner report: New Business / Expansion funnel per partner, then the scorecard.

    Reads the running totals from Redis (read only), or computes them from FILE.
    With --period or --from/--to it counts only that window's days; --compare
    adds the previous period (the quarter before a quarter, else as many days
    just before) and the change.  Goals are measured over their own periods.
    """
    window = options.window
    if compare and window is None:
        raise click.UsageError("--compare needs --period or --from/--to")
    if file is not None:
        engine, latest = options.run(file)
        totals = engine.totals
    else:
        totals = totals_from_redis(redis_url, prefix)
        latest = to_micros(datetime.now(UTC))
    previous = calendar().previous(window) if compare and window is not None else None
    document = build_report(totals, parse_as_of(as_of) if as_of else latest, window, previous)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    elif csv_table is not None:
        if csv_table not in document["tables"]:  # the level tables have no window
            raise click.UsageError(f"the {csv_table} table has no values for a window")
        sys.stdout.write(to_csv(document["tables"][csv_table]))
    else:
        print_tables(rich_tables(document))


def totals_from_redis(redis_url: str | None, prefix: str | None) -> dict[MetricKey, int]:
    """The running totals in Redis (the options, else `PP_*`, else the local Redis)."""
    from sinks.redis_sink import SinkUnavailableError

    settings = Settings()
    url = redis_url or settings.redis_url or LOCAL_REDIS
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    try:
        return asyncio.run(read_totals(url, password, prefix or settings.key_prefix))
    except SinkUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc


async def read_totals(url: str, password: str | None, prefix: str) -> dict[MetricKey, int]:
    """The running totals under `prefix` (bounded wait: a report must not hang)."""
    from sinks.redis_sink import RedisSink

    sink = RedisSink.from_url(url, password, prefix=prefix, max_wait=10.0)
    try:
        return await sink.read_metrics()
    finally:
        await sink.close()
