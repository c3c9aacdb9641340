"""`partnerpulse demo`: the live demo on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from streams.cli.common import embedded_broker_option, runtime_option
from streams.settings import Settings


@click.command()
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
@click.option(
    "--events-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write every event line fed to this .jsonl file (for `recompute`).",
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
    events_file: Path | None,
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
        events_file=events_file,
    )
