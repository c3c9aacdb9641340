"""What the commands share: reading and running a `.jsonl` file, the SPEC §6
document, tables, and the options several commands take."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.table import Table

from models.config import EngineConfig
from models.engine import Engine
from models.events import Event
from models.output import render
from models.parse import DEFAULT_MAX_BYTES, Rejection, parse_event
from models.periods import Calendar, Window, window_totals
from models.subject import MetricKey
from streams.settings import Settings


def read_jsonl(path: Path, config: EngineConfig, max_bytes: int) -> Iterator[Event | Rejection]:
    """Parse a `.jsonl` file line by line, exactly as messages from Kafka are parsed."""
    with path.open("rb") as handle:
        for line in handle:
            raw = line.rstrip(b"\r\n")
            if raw.strip():
                yield parse_event(raw, max_bytes=max_bytes, currencies=config.currencies)


@contextlib.contextmanager
def gc_paused(freeze: bool = True) -> Iterator[None]:
    """Run a batch computation without the cyclic garbage collector.

    The engine keeps hundreds of thousands of long-lived objects and makes
    (almost) no reference cycles, so the collector's repeated scans of that
    growing heap free nothing; they were about a third of `recompute`'s time.
    Reference counting still frees everything else as usual.  On the way out
    the survivors are frozen (moved out of the collector's generations):
    otherwise the first collection after re-enabling scans all of them once
    more, which alone cost half a second on 200k events.  A caller that drops
    its engine afterwards (and runs another) passes `freeze=False`: frozen
    objects are never collected.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def engine_config(model: str, mapping: str) -> EngineConfig:
    """The engine settings of the environment (`PP_*`), with this command's model and mapping."""
    return Settings().engine.model_copy(update={"model": model, "mapping": mapping})


def run_file(file: Path, config: EngineConfig, max_bytes: int) -> tuple[Engine, int]:
    """The engine after FILE, and the latest event time in it (0 for none); streams the file."""
    latest = 0

    def noting_latest() -> Iterator[Event | Rejection]:
        nonlocal latest
        for item in read_jsonl(file, config, max_bytes):
            if not isinstance(item, Rejection):
                latest = max(latest, item.ts)
            yield item

    engine = Engine(config)
    with gc_paused():
        engine.run(noting_latest())
    return engine, latest


def json_document(
    totals: Mapping[MetricKey, int],
    credits: Mapping[str, Mapping[str, Fraction]],
    window: Window | None = None,
) -> bytes:
    """The SPEC §6 document of the totals (seen through `window`, if any) and credits."""
    document = render(window_totals(totals, window), credits)
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def print_tables(tables: list[Table]) -> None:
    """Print rich tables to stdout, full width when piped (never truncate the numbers)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    for table in tables:
        console.print(table)


# --- options shared by several commands ------------------------------------------

input_file = click.Path(exists=True, dir_okay=False, path_type=Path)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the SPEC §6 JSON document."
)
max_bytes_option = click.option("--max-bytes", default=DEFAULT_MAX_BYTES, show_default=True)
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


def _set_environment(variable: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    """An option callback that sets `variable` for every `Settings` read in this
    process and the workers it starts (the option is the variable's flag)."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            os.environ[variable] = value

    return callback


runtime_option = click.option(
    "--runtime",
    type=click.Choice(["aiokafka", "faust"]),
    default=None,
    expose_value=False,
    callback=_set_environment("PP_RUNTIME"),
    help="The workers' consumer loop [default: PP_RUNTIME, aiokafka].",
)
embedded_broker_option = click.option(
    "--embedded-broker",
    type=click.Choice(["tansu", "apache-kafka"]),
    default=None,
    expose_value=False,
    callback=_set_environment("PP_EMBEDDED_BROKER"),
    help="Local broker started when PP_BROKER is unset [default: PP_EMBEDDED_BROKER, tansu].",
)


# --- windows (SPEC §4.1, §6): --period, --from, --to ---------------------------


def window_options(command: Callable[..., None]) -> Callable[..., None]:
    """`--period` or `--from`/`--to`: restrict the metrics to a window of UTC days."""
    options = (
        click.option(
            "--period",
            help="A fiscal period: 2026Q3, 2026-07 or 2026 (fiscal year start: "
            "PP_FISCAL_YEAR_START, default January).",
        ),
        click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First day."),
        click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last day."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def window_of(period: str | None, first: datetime | None, last: datetime | None) -> Window | None:
    """The window the options name (inclusive UTC days); None for the whole history."""
    if period is not None and (first or last):
        raise click.UsageError("give --period or --from/--to, not both")
    if (first is None) != (last is None):
        raise click.UsageError("give both --from and --to")
    try:
        if period is not None:
            return calendar().period(period)
        if first is None or last is None:
            return None
        return Window(first.date(), last.date())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def calendar() -> Calendar:
    """The fiscal calendar of the environment (`PP_FISCAL_YEAR_START`)."""
    return Calendar(Settings().fiscal_year_start)
