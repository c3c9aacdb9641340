"""The `partnerpulse` console script: the click group and its commands.

One small module per command; the options and helpers they share are in
`streams.cli.common`.  The streaming commands import `streams.runtime`
(aiokafka, aiohttp, the runtimes) inside their functions: that import takes
half a second, and `recompute` and `generate` need none of it.
"""

from __future__ import annotations

import click

from streams.cli import bench, convert, demo, generate, recompute, replay, report, send, worker


@click.group()
def main() -> None:
    """PartnerPulse: live W-shaped partner attribution from Kafka to Redis."""


for _command in (
    recompute.recompute,
    report.report,
    generate.generate,
    demo.demo,
    convert.convert,
    worker.worker,
    send.send,
    replay.replay,
    bench.bench,
):
    main.add_command(_command)
