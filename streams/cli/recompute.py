"""`partnerpulse recompute`: the batch oracle over a file."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from models.report import build_report, rich_tables
from streams.cli.common import (
    engine_config,
    input_file,
    json_document,
    json_option,
    mapping_option,
    max_bytes_option,
    model_option,
    print_tables,
    run_file,
    window_of,
    window_options,
)


@click.command()
@click.argument("file", type=input_file)
@json_option
@model_option
@mapping_option
@max_bytes_option
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
