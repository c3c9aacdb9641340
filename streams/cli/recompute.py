"""`partnerpulse recompute`: the batch oracle over a file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from models.report import build_report, rich_tables
from streams.cli.common import (
    EngineOptions,
    engine_options,
    input_file,
    json_document,
    json_option,
    print_tables,
)


@click.command()
@click.argument("file", type=input_file)
@json_option
@engine_options
def recompute(file: Path, as_json: bool, options: EngineOptions) -> None:
    """Batch oracle: final metrics and credits of FILE, no broker needed.

    Without --json it prints the `report` tables of FILE as of its latest event.
    With a window, `metrics` holds each metric with a series summed over the
    window's days (the others are left out); `series` stays whole.
    """
    engine, latest = options.run(file)
    if as_json:
        sys.stdout.buffer.write(json_document(engine.totals, engine.credits(), options.window))
        return
    print_tables(rich_tables(build_report(engine.totals, latest, options.window)))
