"""The Quix Streams baseline of `partnerpulse bench`: its textbook stateful pattern.

Quix Streams is the other well-kept Python stream processor users compare
with; its documented way to keep a running figure is a stateful `update`
that reads and writes one RocksDB state key per message, backed by a
changelog topic.  This module times exactly that over the bench's scratch
topic (every raw event line, unkeyed): per message it parses the line with
`models.parse.parse_event` and re-assigns one state key (the event's lead,
as the Faust textbook baseline does with its table), from the first
delivery until the state of `count` events is committed.

Like the Faust baselines it runs in a child process under a timeout, so its
start-up cost or a hang never stalls the bench, and a failure is a figure
"n/a (reason)".  Quix needs broker features Tansu lacks: it copies the
input topic's `retention.ms` (from DescribeConfigs, which Tansu does not
fill) into its changelog topic, and stops at once without it, so on Tansu
`quix_rate` returns the child's last error line within seconds (its
exactly-once mode would also need transactions, which Tansu has not).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from benchmarks.figures import RESULT_MARK, Figure
from models.events import route
from models.parse import Rejection, parse_event


def quix_rate(bootstrap: str, topic: str, partitions: int, count: int, timeout: float) -> Figure:
    """Events/s of the Quix textbook pattern over `topic`, or "n/a (reason)".

    `partitions` (the scratch topic's) is taken for the same call shape as
    the other baselines but not passed on: Quix reads the topic's partitions
    from the broker and gives its changelog topic as many.
    """
    with tempfile.TemporaryDirectory() as state_dir:
        spec = {
            "bootstrap": bootstrap,
            "topic": topic,
            "count": count,
            "group": f"pp-bench-quix-{uuid.uuid4().hex[:8]}",
            "state_dir": state_dir,
        }
        return child_figure(
            ["-m", "benchmarks.quix_baseline", json.dumps(spec)], timeout, state_dir
        )


def child_figure(args: list[str], timeout: float, cwd: str) -> Figure:
    """Run `python args...` and read the figure line (`RESULT_MARK`) it printed;
    else "n/a" with the child's last words."""
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, *args], capture_output=True, timeout=timeout, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired:
        return f"n/a (no result within {timeout:.0f} s)"
    out = done.stdout.decode(errors="replace")
    answers = [line.partition(RESULT_MARK)[2] for line in out.splitlines() if RESULT_MARK in line]
    if answers:
        answer = json.loads(answers[-1])
        return float(answer["events"] / answer["seconds"])
    tail = (done.stderr.decode(errors="replace") + out).strip().splitlines()[-1:] or ["no output"]
    return f"n/a (exit {done.returncode}: {tail[0][:100]})"


def _quix_child(spec: dict[str, Any]) -> None:
    """The child's whole life: a Quix application that times `count` events, prints, exits.

    The clock starts at the first delivery, as `bench._Clock` does, and stops
    when `run` returns: after the checkpoint holding the last event's state
    (Quix writes RocksDB and the changelog at checkpoints, every 5 s by
    default, so a short run stopped at the last event would time none of
    that work) and after the application's orderly close, which cannot be
    told apart from it without Quix internals (on 20,000 events here the two
    were 0.4-0.7 s of a 1.7-2.5 s run: the figure is conservative for Quix on
    short runs).
    """
    from quixstreams import Application  # only the child needs Quix; importing it is slow

    app = Application(
        broker_address=spec["bootstrap"],
        consumer_group=spec["group"],
        auto_offset_reset="earliest",
        state_dir=spec["state_dir"],
        loglevel="ERROR",
    )
    topic = app.topic(spec["topic"], key_deserializer="bytes", value_deserializer="bytes")
    started: list[float] = []
    processed = [0]

    def count_event(value: bytes, state: Any) -> None:
        """The textbook update: parse, then read and re-assign one state key."""
        event = parse_event(value)
        key = "dead" if isinstance(event, Rejection) else route(event)[1]
        state.set(key, state.get(key, 0) + 1)
        if not started:
            started.append(time.perf_counter())
        processed[0] += 1
        if processed[0] == spec["count"]:
            app.stop()  # then `run` commits the last checkpoint and returns

    app.dataframe(topic).update(count_event, stateful=True)
    app.run()
    # The first event's own cost is not timed (its clock started after it).
    figure = {"events": processed[0] - 1, "seconds": max(time.perf_counter() - started[0], 1e-9)}
    sys.stdout.write(RESULT_MARK + json.dumps(figure) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the figure is out


if __name__ == "__main__":
    _quix_child(json.loads(sys.argv[1]))
