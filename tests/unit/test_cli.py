"""`generate` and `recompute` end to end through the console script's code."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from datagen import SyntheticConfig, generate
from streams.cli import main


def test_generate_then_recompute_json(tmp_path: Path) -> None:
    runner = CliRunner()
    events = tmp_path / "events.jsonl"
    made = runner.invoke(
        main,
        [
            "generate",
            "--seed",
            "5",
            "--leads",
            "200",
            "--duplicates",
            "0.05",
            "--invalid",
            "0.02",
            "--shuffle",
            "0.5",
            "--out",
            str(events),
        ],
    )
    assert made.exit_code == 0, made.output
    lines = events.read_text().splitlines()
    assert len(lines) > 1000

    result = runner.invoke(main, ["recompute", str(events), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert set(document) == {"metrics", "series", "credits"}
    assert document["series"]["all"]["integrations.installs"]  # the generator installs
    # The generator returns its deliberately malformed lines as str items.
    config = SyntheticConfig(seed=5, leads=200, duplicates=0.05, invalid=0.02, shuffle=0.5)
    bad = sum(isinstance(item, str) for item in generate(config))
    assert bad > 0
    assert document["metrics"]["all"]["dq.dead_letters"] == bad
    for subject, shares in document["credits"].items():
        assert subject.split(":", 1)[0] in {"lead", "opportunity"}
        assert abs(sum(shares.values()) - 1) < 1e-5  # 6-decimal rounding of exact thirds
    full_path = runner.invoke(main, ["recompute", str(events), "--json", "--model", "full-path"])
    assert json.loads(full_path.output)["credits"] != document["credits"]

    table = runner.invoke(main, ["recompute", str(events)])
    assert table.exit_code == 0 and "partner:" in table.output
