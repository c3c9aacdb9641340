"""A synthetic stream through the engine, cut into sink batches, for the sink tests.

The engine plays the workers: it settles every `size` events and each batch
carries the contributions that changed since the last one, the batch's dead
letters (source: `leads`, partition 0, the line number) and its offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import orjson

from datagen import SyntheticConfig, generate
from models.engine import GROUP, Engine
from models.parse import Rejection, parse_event
from models.subject import Contribution, MetricKey
from sinks.redis_sink import DeadLetter

TOPIC = "leads"


@dataclass(frozen=True)
class Batch:
    contributions: dict[str, Contribution]
    dead_letters: list[DeadLetter]
    offsets: dict[tuple[str, int], int]


@dataclass(frozen=True)
class Run:
    batches: list[Batch]
    totals: dict[MetricKey, int]
    credits: dict[str, dict[str, Fraction]]
    final: dict[str, Contribution]


def contributions(engine: Engine) -> dict[str, Contribution]:
    """Every subject's current contribution, by sink subject name."""
    out = {f"lead:{k}": s.contribution for k, s in engine.leads.items()}
    out.update({f"opportunity:{k}": s.contribution for k, s in engine.opportunities.items()})
    out.update(
        {
            f"{kind.removeprefix(GROUP)}:{key}": subject.contribution
            for key, subjects in engine.others.items()
            for kind, subject in subjects.items()
        }
    )
    return out


def engine_run(config: SyntheticConfig, size: int) -> Run:
    """The stream of `config` in arrival order, settled every `size` events."""
    items = [
        parse_event(item.encode() if isinstance(item, str) else orjson.dumps(item))
        for item in generate(config)
    ]
    engine = Engine()
    sent: dict[str, Contribution] = {}
    batches = []
    for start in range(0, len(items), size):
        end = min(start + size, len(items))
        dead = []
        for offset in range(start, end):
            item = items[offset]
            if isinstance(item, Rejection):
                engine.reject(item)
                dead.append(DeadLetter(TOPIC, 0, offset, item.reason))
            else:
                engine.ingest(item, offset)
        engine.settle()
        changed = {s: c for s, c in contributions(engine).items() if sent.get(s) != c}
        sent.update(changed)
        batches.append(Batch(changed, dead, {(TOPIC, 0): end}))
    assert any(b.dead_letters for b in batches)
    return Run(batches, dict(engine.totals), engine.credits(), contributions(engine))
