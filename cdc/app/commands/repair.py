"""`cdc repair TABLE`: close a table's open gaps by re-bootstrapping it from a scan."""

from __future__ import annotations

import argparse
import json
import sys

from cdc.config import Settings
from cdc.core.errors import CdcError

NAME = "repair"
HELP = "re-bootstrap a table with an open gap from a scan, sweep deletions, close the gap"
DESCRIPTION = (
    "Scans the DynamoDB table (strongly consistent) and writes each item where the "
    "replica's row predates the gap, placed so that it beats every record before the gap "
    "and loses to every record after it; then deletes (soft or hard, per the table's "
    "options) the rows from before the gap that the scan did not find, and closes the "
    "gaps. Run it while the stream is being applied again (Lambda or `cdc tail`): records "
    "after the gap keep coming. README: Gaps and repair."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", metavar="TABLE", help="DynamoDB table name or table ARN")
    parser.add_argument("--region", help="AWS region (default: the table ARN's, or AWS_REGION)")
    parser.add_argument("--page-size", type=int, metavar="N", help="items per Scan page")
    parser.add_argument(
        "--from-export",
        metavar="S3_URL",
        help="re-bootstrap from a DynamoDB export instead of a scan (not available yet)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from cdc.app.engines import engine_for
    from cdc.aws import clients as aws
    from cdc.jobs.repair import repair, scan_pages

    if args.from_export is not None:
        raise CdcError(
            "--from-export is not available yet: repair from a scan (leave the option out)"
        )
    if args.page_size is not None and args.page_size < 1:
        raise CdcError("--page-size must be at least 1")
    name, arn_region = aws.table_name_and_region(args.table)
    client = aws.Clients(args.region).dynamodb(args.region or arn_region)
    source = aws.describe_table(client, name)
    engine = engine_for(settings)
    try:
        report = repair(
            engine, settings, source, scan_pages(client, source.name, page_size=args.page_size)
        )
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(
            f"repair {source.name}: {report.items_read} items read, {report.rows_repaired} rows "
            f"written, {report.rows_kept} kept (written after the gap), {report.rows_swept} "
            f"deleted (gone from the source), {report.dead_lettered} dead-lettered; "
            f"{report.gaps_closed} gaps closed in {report.seconds:.1f}s"
        )
    print(f"database: {settings.masked_url()}", file=sys.stderr)
    if report.dead_lettered:
        print(
            f"{report.dead_lettered} items could not be written (`cdc dlq list`): the gap "
            f"stays open; fix the cause and run `cdc repair {args.table}` again",
            file=sys.stderr,
        )
        return 1
    return 0
