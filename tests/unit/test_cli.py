"""`generate` and `recompute` end to end through the console script's code."""

from __future__ import annotations

import csv
import io
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


def test_report_csv_is_the_json_table(tmp_path: Path) -> None:
    """`report --csv TABLE` holds the rows and values of that table in `--json`,
    previous period included."""
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(json.dumps(item) for item in generate(SyntheticConfig(seed=3, leads=300))) + "\n"
    )
    runner = CliRunner()
    common = ["report", "--file", str(events), "--period", "2026Q1", "--compare"]
    document = json.loads(runner.invoke(main, [*common, "--json"]).output)
    for name in ("new_business", "pipeline"):
        result = runner.invoke(main, [*common, "--csv", name])
        assert result.exit_code == 0, result.output
        header, *rows = list(csv.reader(io.StringIO(result.output)))
        table = document["tables"][name]
        keys = [c["key"] for c in table["columns"]]
        assert len(header) == 1 + 2 * len(keys)  # scope, the window's, the previous period's
        assert len(rows) == len(table["rows"]) > 1
        assert rows[1][0] == "partners" or name == "pipeline"  # the any-partner row
        for row, expected in zip(rows, table["rows"], strict=True):
            values = [expected["values"][k] for k in keys]
            values += [expected["previous"][k] for k in keys]
            assert row == [expected["label"], *("" if v is None else str(v) for v in values)]
    levels = runner.invoke(main, [*common, "--csv", "cohorts"])
    assert levels.exit_code != 0 and "no values for a window" in levels.output
