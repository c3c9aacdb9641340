"""`partnerpulse replay`: a file through the real streaming path, read back from Redis."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click
from rich.table import Table

from models.output import render_value
from models.periods import window_totals
from models.subject import MetricKey
from streams.cli.common import (
    embedded_broker_option,
    input_file,
    json_document,
    json_option,
    mapping_option,
    model_option,
    print_tables,
    runtime_option,
    window_of,
    window_options,
)
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


@click.command()
@click.argument("file", type=input_file)
@json_option
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


def print_partner_table(totals: dict[MetricKey, int]) -> None:
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
