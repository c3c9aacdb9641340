"""The oracle's invariance on a realistic stream, not just on tiny hypothesis sets."""

from __future__ import annotations

import json

import pytest

from datagen import SyntheticConfig, generate
from models.config import EngineConfig
from models.engine import Engine
from models.output import render
from models.parse import parse_event

ORDER_DEPENDENT = {"dq.late_events", "dq.duplicates_ignored"}


def recompute(config: SyntheticConfig, engine_config: EngineConfig) -> Engine:
    engine = Engine(engine_config)
    engine.run(
        parse_event(item.encode() if isinstance(item, str) else json.dumps(item).encode())
        for item in generate(config)
    )
    return engine


@pytest.mark.parametrize("model", ["w-shaped", "full-path"])
def test_shuffled_stream_with_duplicates_equals_sorted(model: str) -> None:
    engine_config = EngineConfig(model=model)  # type: ignore[arg-type]
    ordered = recompute(SyntheticConfig(seed=11, leads=600), engine_config)
    messy = recompute(
        SyntheticConfig(seed=11, leads=600, shuffle=1.0, duplicates=0.05), engine_config
    )

    def stable(engine: Engine) -> dict[str, object]:
        totals = {k: v for k, v in engine.totals.items() if k[1] not in ORDER_DEPENDENT}
        return render(totals, engine.credits())

    assert stable(messy) == stable(ordered)
    assert messy.totals[("all", "dq.duplicates_ignored")] > 0
    assert ("all", "dq.duplicates_ignored") not in ordered.totals
    assert ordered.totals[("all", "nb.cw.influenced")] > 0
