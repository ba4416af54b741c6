"""`cdc backfill TABLE`: copy a table's current items into the replica."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING

from cdc.config import Settings

if TYPE_CHECKING:
    from cdc.aws.clients import Clients
    from cdc.jobs.backfill import PageHook

NAME = "backfill"
HELP = "copy a table's current items into the replica (parallel Scan, resumable)"
DESCRIPTION = (
    "Scan a DynamoDB table and write every item through the same apply path as the "
    "stream, with sequence number 0: a backfilled item is written only where the replica "
    "has no row (and no tombstone), so it never overwrites a change the stream applied. "
    "Start the stream's event source mapping at TRIM_HORIZON first, then backfill. Each "
    "segment's position is saved after every page: an interrupted backfill (Ctrl-C, a "
    "crash) resumes where it stopped when run again. Exits 0 when complete, 1 on errors, "
    "130 when interrupted."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", metavar="TABLE", help="table name or table ARN")
    parser.add_argument(
        "--segments",
        type=_positive_int,
        default=4,
        help="parallel Scan segments (default 4); a resumed backfill must use the same number",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=8,
        help="threads scanning segments at once (default 8, at most --segments)",
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        metavar="ITEMS_PER_S",
        help="read at most this many items per second, all segments together, so the "
        "table's own traffic is not starved (default: as fast as DynamoDB allows)",
    )
    parser.add_argument(
        "--consistent",
        action="store_true",
        help="strongly consistent reads (twice the read capacity of the default)",
    )
    parser.add_argument(
        "--page-size", type=_positive_int, metavar="N", help="items per Scan page (Scan's Limit)"
    )
    parser.add_argument(
        "--restart", action="store_true", help="forget saved progress and scan from the start"
    )
    parser.add_argument("--region", help="AWS region (default: from the ARN or the environment)")
    parser.add_argument(
        "--progress-interval",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="when not on a terminal: print a progress line this often (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    # --- export loads (cdc/app/commands/backfill_export.py) -------------------------------
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--from-export",
        metavar="S3_URL",
        help="load a finished DynamoDB export instead of scanning: its folder, "
        "s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID; any number of processes running the "
        "same command share its files",
    )
    source.add_argument(
        "--export-to",
        metavar="S3_URL",
        help="ask DynamoDB for an export to s3://BUCKET[/PREFIX] (needs point-in-time "
        "recovery), wait for it, then load it",
    )
    parser.add_argument(
        "--lease",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="export loads: a claimed file not advanced for this long is taken over by "
        "another worker (default 120)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="export loads: lines written per transaction (default 1000)",
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=15.0,
        metavar="SECONDS",
        help="--export-to: how often to ask DynamoDB whether the export is done (default 15)",
    )
    # --- end export loads -----------------------------------------------------------------


def run(
    settings: Settings,
    args: argparse.Namespace,
    *,
    clients: Clients | None = None,
    before_write: PageHook | None = None,
) -> int:
    """`clients` and `before_write` let tests fake AWS and interleave stream changes."""
    from cdc.app.engines import engine_for
    from cdc.app.progress import BarProgress, LineProgress
    from cdc.app.signals import stop_on_signals
    from cdc.aws import clients as aws
    from cdc.jobs.backfill import Backfill, BackfillOptions, Progress

    if args.from_export or args.export_to:
        from cdc.app.commands.backfill_export import run_export

        return run_export(settings, args, clients=clients)
    name, arn_region = aws.table_name_and_region(args.table)
    clients = clients or aws.Clients(args.region or settings.region)
    client = clients.dynamodb(args.region or arn_region)
    source = aws.describe_table(client, name)
    options = BackfillOptions(
        segments=args.segments,
        rate=args.rate,
        consistent=args.consistent,
        page_size=args.page_size,
        restart=args.restart,
        workers=min(args.workers, args.segments),
    )
    # One connection per worker thread, plus one for the progress table.
    engine = engine_for(settings, pool_size=options.workers + 1, max_overflow=options.workers)
    progress: Progress
    if sys.stderr.isatty() and not args.json:
        progress = BarProgress(source.name, source.item_count)
    else:
        progress = LineProgress(source.name, args.progress_interval)
    stop = threading.Event()
    backfill = Backfill(
        client,
        source,
        engine,
        settings,
        options,
        progress=progress,
        stop=stop,
        before_write=before_write,
    )
    try:
        with stop_on_signals(stop, "the current page of each segment"):
            report = backfill.run()
    finally:
        engine.dispose()

    if args.json:
        print(json.dumps({**vars(report), "complete": report.complete}, default=str))
    elif report.already_complete:
        print(
            f"backfill of {source.name} is already complete ({report.items_total} items); "
            "use --restart to run it again"
        )
    else:
        state = "complete" if report.complete else "INTERRUPTED" if report.interrupted else "FAILED"
        print(
            f"backfill {source.name}: {state}: {report.items_read} items read this run "
            f"({report.items_total} in all): {report.applied} written, {report.stale} "
            f"already in the replica, {report.dead_lettered} dead-lettered; "
            f"{report.segments_done}/{report.segments} segments done in "
            f"{report.seconds:.1f}s"
        )
        for error in report.errors:
            print(f"  error: {error}", file=sys.stderr)
        if report.dead_lettered:
            print("dead letters: see `cdc dlq list`")
        if not report.complete:
            print(f"rerun `cdc backfill {args.table}` to resume", file=sys.stderr)
    print(f"database: {settings.masked_url()}", file=sys.stderr)
    if report.errors:
        return 1
    return 130 if report.interrupted else 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value
