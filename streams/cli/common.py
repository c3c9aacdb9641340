"""What the commands share: reading and running a `.jsonl` file, the SPEC §6
document, tables, and the options several commands take."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import click
import orjson
from click.decorators import FC
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


def choice_option(flag: str, choices: list[str], help: str) -> Callable[[FC], FC]:
    """An option taking one of `choices`, the first by default."""
    return click.option(
        flag, type=click.Choice(choices), default=choices[0], show_default=True, help=help
    )


model_option = choice_option("--model", ["w-shaped", "full-path"], "Opportunity attribution model.")
mapping_option = choice_option(
    "--mapping", ["contact-role", "account"], "Which leads' touchpoints an opportunity pools."
)


def environment_option(
    flag: str, choices: list[str], variable: str, help: str
) -> Callable[[FC], FC]:
    """An option that is the flag of `variable`: it sets the variable for every
    `Settings` read in this process and the workers it starts."""

    def choose(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            os.environ[variable] = value

    return click.option(
        flag,
        type=click.Choice(choices),
        default=None,
        expose_value=False,
        callback=choose,
        help=help,
    )


runtime_option = environment_option(
    "--runtime",
    ["aiokafka", "faust"],
    "PP_RUNTIME",
    "The workers' consumer loop [default: PP_RUNTIME, aiokafka].",
)
embedded_broker_option = environment_option(
    "--embedded-broker",
    ["tansu", "apache-kafka"],
    "PP_EMBEDDED_BROKER",
    "Local broker started when PP_BROKER is unset [default: PP_EMBEDDED_BROKER, tansu].",
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


# --- the engine over a file: recompute, report --file ---------------------------


@dataclass(frozen=True)
class EngineOptions:
    """How a command runs the engine over a file (--model, --mapping,
    --max-bytes) and the window it reads the totals through."""

    model: str
    mapping: str
    max_bytes: int
    window: Window | None

    def run(self, file: Path) -> tuple[Engine, int]:
        """The engine after FILE and its latest event time (`run_file`)."""
        return run_file(file, engine_config(self.model, self.mapping), self.max_bytes)


def engine_options(command: Callable[..., None]) -> Callable[..., None]:
    """--model, --mapping, --max-bytes and the window options, handed to
    `command` as one `options: EngineOptions` argument (the window checked first)."""

    @functools.wraps(command)
    def with_options(
        *args: Any,
        model: str,
        mapping: str,
        max_bytes: int,
        period: str | None,
        first: datetime | None,
        last: datetime | None,
        **kwargs: Any,
    ) -> None:
        window = window_of(period, first, last)
        command(*args, options=EngineOptions(model, mapping, max_bytes, window), **kwargs)

    return model_option(mapping_option(max_bytes_option(window_options(with_options))))
