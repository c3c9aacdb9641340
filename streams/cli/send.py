"""`partnerpulse send`: publish a `.jsonl` file to its topics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from streams.cli.common import input_file
from streams.settings import Settings


@click.command()
@click.argument("file", type=input_file)
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
