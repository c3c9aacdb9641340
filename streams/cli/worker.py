"""`partnerpulse worker`: one worker process."""

from __future__ import annotations

import click

from streams.cli.common import embedded_broker_option, runtime_option
from streams.settings import Settings


@click.command()
@embedded_broker_option
@runtime_option
def worker() -> None:
    """Run a worker (configured by PP_* environment variables)."""
    from streams.runtime import infrastructure, run_worker

    with infrastructure(Settings()) as (settings, endpoints):
        if settings.broker is None:
            click.echo(f"embedded broker: {endpoints.broker}", err=True)
        run_worker(settings, endpoints)
