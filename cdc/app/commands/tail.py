"""`cdc tail STREAM_ARN`: replicate a stream without Lambda."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING

from cdc.config import Settings
from cdc.core.errors import CdcError

if TYPE_CHECKING:
    from cdc.aws.clients import Clients
    from cdc.jobs.tail import TailStats

NAME = "tail"
HELP = "follow a DynamoDB stream (or a Kinesis data stream fed by DynamoDB) without Lambda"
DESCRIPTION = (
    "Read a DynamoDB stream with GetRecords and apply it through the same path as the "
    "Lambda handler: shards in lineage order (a child only after its parent is read to "
    "its end), each from its checkpoint in cdc_checkpoints, which is written in the same "
    "transaction as the batch. Throttling and network errors are retried with backoff "
    "for as long as they last (once the stream was reached), expired iterators "
    "renewed, and a batch that could not be committed is read again. Ctrl-C or SIGTERM "
    "stops after the current batch. Do not run two tails on one stream."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stream_arn",
        metavar="STREAM_ARN",
        help="the table's LatestStreamArn, or the ARN of the Kinesis data stream its "
        "Kinesis streaming destination writes to",
    )
    parser.add_argument(
        "--from",
        dest="start",
        choices=("trim_horizon", "latest"),
        default="trim_horizon",
        help="where shards without a checkpoint start: the oldest record kept (24 hours, "
        "the default) or only new records",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="stop when every shard is read to its end or caught up (for scripts); exits "
        "1 if a batch could not be committed",
    )
    parser.add_argument(
        "--max-seconds", type=float, metavar="S", help="stop after this many seconds"
    )
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=1000,
        metavar="N",
        help="records per GetRecords call and per database transaction (1-1000, default 1000)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="wait after an empty page before polling the shard again (default 1)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=60.0,
        metavar="S",
        help="print a status line this often on stderr (default 60; 0: never)",
    )
    parser.add_argument("--json", action="store_true", help="print the final summary as JSON")


def run(settings: Settings, args: argparse.Namespace, *, clients: Clients | None = None) -> int:
    from cdc.app.engines import engine_for
    from cdc.app.signals import stop_on_signals
    from cdc.aws import clients as aws
    from cdc.jobs.replicate import Replicator
    from cdc.jobs.tail import Tail
    from cdc.sources.dynamodb_streams.reader import StreamReader
    from cdc.sources.kinesis.records import is_stream_arn

    arn = aws.Arn.parse(args.stream_arn)
    kinesis = arn is not None and arn.service == "kinesis" and is_stream_arn(args.stream_arn)
    if not kinesis and (arn is None or arn.service != "dynamodb" or "/stream/" not in arn.resource):
        raise CdcError(
            f"{args.stream_arn!r} is not a DynamoDB stream ARN "
            "(arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL) or a Kinesis "
            "stream ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"
        )
    assert arn is not None
    clients = clients or aws.Clients(settings.region)
    reader: StreamReader
    follow: type[Tail]
    if kinesis:  # Kinesis Data Streams for DynamoDB (README: Kinesis Data Streams)
        from cdc.jobs.kinesis_tail import KinesisTail
        from cdc.sources.kinesis.reader import KinesisReader

        reader, follow = (
            KinesisReader(clients.kinesis(arn.region or None), args.stream_arn),
            KinesisTail,
        )
    else:
        reader, follow = StreamReader(clients.streams(arn.region or None), args.stream_arn), Tail
    engine = engine_for(settings)
    stop = threading.Event()
    tail = follow(
        reader,
        Replicator(engine, settings),
        start=args.start,
        batch_size=args.batch_size,
        poll_interval=args.poll_interval,
        stop=stop,
        status_interval=args.status_interval or None,
        on_status=lambda stats: print(f"tail: {stats.line()}", file=sys.stderr, flush=True),
        # Where it writes, as the other commands say, once the stream was reached: a
        # service's log shows it from the start, and a setup mistake stays one line.
        on_started=lambda: print(f"database: {settings.masked_url()}", file=sys.stderr, flush=True),
    )
    try:
        with stop_on_signals(stop):
            stats = tail.run(once=args.once, max_seconds=args.max_seconds)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(vars(stats)))
    else:
        print(f"tail {args.stream_arn}: {stats.line()}")
    return _exit_code(stats, args.once)


def _exit_code(stats: TailStats, once: bool) -> int:
    """A service stopped on purpose exits 0; a script (--once) learns of trouble."""
    if once and (stats.failed_batches or stats.gaps):
        return 1
    return 0


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:  # GetRecords' Limit
        raise argparse.ArgumentTypeError(f"{text!r} is not between 1 and 1000")
    return value
