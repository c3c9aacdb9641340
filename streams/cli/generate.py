"""`partnerpulse generate`: a seeded synthetic event stream."""

from __future__ import annotations

from datetime import datetime
from typing import IO

import click
import orjson

from datagen import DEFAULT_START, SyntheticConfig
from datagen import generate as synthesise


@click.command()
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
