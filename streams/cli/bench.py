"""`partnerpulse bench`: the benchmark (benchmarks/bench.py), imported only when run."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import orjson

from streams.cli.common import embedded_broker_option, runtime_option


@click.command()
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
@click.option(
    "--events-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Measure on the first --events lines of this .jsonl instead of generated events "
    "(e.g. one run before and after a change on the very same input).",
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
    events_file: Path | None,
    as_json: bool,
    series_scale: tuple[int, int, int],
) -> None:
    """Measure the pipeline beside raw aiokafka and Faust baselines, in one run.

    Progress goes to stderr; the table (or JSON) to stdout.
    """
    from benchmarks.bench import BenchConfig, run_bench  # slow imports: only when run

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
        events_file=events_file,
    )
    with tempfile.TemporaryDirectory() as workdir:
        result = run_bench(config, Path(workdir), lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
        return
    for line in result.lines():
        click.echo(line)
