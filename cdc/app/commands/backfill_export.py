"""`cdc backfill TABLE --from-export S3_URL | --export-to s3://BUCKET[/PREFIX]`: load a
DynamoDB export instead of scanning (README: `cdc backfill`, "From an export")."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from cdc.config import Settings

if TYPE_CHECKING:
    from cdc.aws.clients import Clients
    from cdc.jobs.export_load import BatchHook


def run_export(
    settings: Settings,
    args: argparse.Namespace,
    *,
    clients: Clients | None = None,
    before_write: BatchHook | None = None,
) -> int:
    from cdc.app.engines import engine_for
    from cdc.app.progress import BarProgress, LineProgress
    from cdc.app.signals import stop_on_signals
    from cdc.aws import clients as aws
    from cdc.aws import exports as s3x
    from cdc.jobs.backfill import Progress
    from cdc.jobs.export_load import Export, ExportLoad, LoadOptions

    name, arn_region = aws.table_name_and_region(args.table)
    clients = clients or aws.Clients(args.region)
    region = args.region or arn_region
    client = clients.dynamodb(region)
    source = aws.describe_table(client, name)
    url: str = args.from_export or ""
    if args.export_to:
        bucket, prefix = _bucket_and_prefix(args.export_to)
        export_arn = s3x.request_export(client, source.arn, bucket, prefix)
        print(f"export requested: {export_arn}", file=sys.stderr, flush=True)
        location = s3x.wait_for_export(
            client,
            export_arn,
            interval=args.poll_interval,
            report=_export_progress(export_arn, sys.stderr.isatty() and not args.json),
        )
        url = location.url
    export = Export.open(clients.s3(region), url, source.arn)
    options = LoadOptions(workers=args.workers, batch_lines=args.batch_size, lease=args.lease)
    engine = engine_for(settings, pool_size=options.workers + 1, max_overflow=options.workers)
    progress: Progress
    if sys.stderr.isatty() and not args.json:
        progress = BarProgress(source.name, export.summary.item_count, unit="files")
    else:
        progress = LineProgress(source.name, args.progress_interval, unit="files")
    stop = threading.Event()
    load = ExportLoad(
        clients.s3(region),
        export,
        source,
        engine,
        settings,
        options,
        progress=progress,
        stop=stop,
        before_write=before_write,
    )
    try:
        with stop_on_signals(stop, "the current batch of each worker"):
            report = load.run()
    finally:
        engine.dispose()

    if args.json:
        print(json.dumps({**vars(report), "complete": report.complete}, default=str))
    elif report.already_complete:
        print(
            f"export {export.location.url} is already loaded into the replica of "
            f"{source.name} ({report.items_done} items in {report.files} files)"
        )
    else:
        state = "complete" if report.complete else "INTERRUPTED" if report.interrupted else "FAILED"
        rate = report.items_read / report.seconds if report.seconds else 0.0
        print(
            f"backfill {source.name} from {export.location.url}: {state}: "
            f"{report.items_read} items read by this process ({rate:,.0f}/s; "
            f"{report.items_done} of {report.items_total} in all): {report.applied} "
            f"written, {report.stale} already in the replica, {report.dead_lettered} "
            f"dead-lettered; {report.files_done}/{report.files} files done in "
            f"{report.seconds:.1f}s"
        )
        if report.dead_lettered:
            print("dead letters: see `cdc dlq list`")
    for error in report.errors:
        print(f"cdc: error: {error}", file=sys.stderr)
    if not report.complete and not report.already_complete:
        print(f"rerun `cdc backfill {args.table} --from-export {url}` to resume", file=sys.stderr)
    print(f"database: {settings.masked_url()}", file=sys.stderr)
    if report.errors:
        return 1
    return 130 if report.interrupted else 0


def _bucket_and_prefix(url: str) -> tuple[str, str | None]:
    from cdc.aws.exports import ExportError

    if not url.startswith("s3://") or not url[len("s3://") :].split("/", 1)[0]:
        raise ExportError(f"--export-to {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    return bucket, prefix.strip("/") or None


def _export_progress(export_arn: str, terminal: bool) -> Callable[[str, float], None]:
    """Prints the export's state while AWS works: one rewritten line on a terminal,
    a line a minute otherwise."""
    last = [-60.0]

    def report(status: str, elapsed: float) -> None:
        if terminal:
            end = "\n" if status != "IN_PROGRESS" else ""
            print(f"\rexport {status} after {elapsed:,.0f}s", end=end, file=sys.stderr, flush=True)
        elif status != "IN_PROGRESS" or elapsed - last[0] >= 60:
            last[0] = elapsed
            print(f"export {export_arn}: {status} after {elapsed:,.0f}s", file=sys.stderr)

    return report
