"""`cdc verify TABLE`: compare the replica with the source table."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cdc.app.commands.backfill import _positive_float, _positive_int
from cdc.config import Settings

if TYPE_CHECKING:
    from cdc.aws.clients import Clients
    from cdc.core.compare import VerifyReport

NAME = "verify"
HELP = "compare the replica with the source table; exit 1 if they differ"
DESCRIPTION = (
    "Scan the DynamoDB table and read the replica, compare every item in the plain-JSON "
    "form, and report keys that are missing (in the source, not live in the replica), "
    "extra (live in the replica, not in the source) or different (with the attributes "
    "that differ); items the replica cannot hold are unreplicable (dead-lettered), not "
    'missing; rows a table with ttl_deletes = "ignore" keeps after a TTL delete are '
    "counted as kept, which is no difference. Candidate differences are read again on "
    "both sides after --settle "
    "seconds, so changes still in flight through the stream are not reported. A table "
    "with entities is checked as the stream routes it: each item live in the one entity "
    "table (or the document table) its routing chooses, with its child rows, and in no "
    "other; each difference names its table (--sample is not supported there yet). "
    "Exits 0 when identical, 1 when they differ."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", metavar="TABLE", help="table name or table ARN")
    parser.add_argument(
        "--sample",
        type=_fraction,
        metavar="F",
        help="check a fraction of a big table, e.g. 0.05: that share of Scan segments on "
        "the source side, and of replica rows (by key hash) on the other (not for a table "
        "with entities)",
    )
    parser.add_argument("--consistent", action="store_true", help="strongly consistent Scan reads")
    parser.add_argument(
        "--examples",
        type=int,
        default=10,
        metavar="N",
        help="show at most N keys of each kind of difference (default 10)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5.0,
        metavar="S",
        help="wait this long before reading candidate differences again (default 5)",
    )
    parser.add_argument(
        "--rate",
        type=_positive_float,
        metavar="ITEMS_PER_S",
        help="read at most this many items per second (Scan pages capped to one second's worth)",
    )
    parser.add_argument("--page-size", type=_positive_int, metavar="N", help="items per Scan page")
    parser.add_argument("--seed", type=int, help="random seed for --sample (reproducible runs)")
    parser.add_argument("--region", help="AWS region (default: from the ARN or the environment)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(settings: Settings, args: argparse.Namespace, *, clients: Clients | None = None) -> int:
    from cdc.app.engines import engine_for
    from cdc.aws import clients as aws
    from cdc.core.jsontext import dumps
    from cdc.jobs.verify import Verifier

    name, arn_region = aws.table_name_and_region(args.table)
    clients = clients or aws.Clients(args.region or settings.region)
    client = clients.dynamodb(args.region or arn_region)
    source = aws.describe_table(client, name)
    engine = engine_for(settings)
    try:
        report = Verifier(
            client,
            source,
            engine,
            settings,
            sample=args.sample,
            consistent=args.consistent,
            page_size=args.page_size,
            rate=args.rate,
            examples=args.examples,
            settle=args.settle,
            seed=args.seed,
        ).run()
    finally:
        engine.dispose()
    if args.json:
        # Numbers as JSON numbers, exact (a key 7 is 7, as the text report prints it).
        print(dumps(report.as_json()))
    else:
        print_report(report)
    print(f"database: {settings.masked_url()}", file=sys.stderr)
    return 0 if report.identical else 1


_LABELS = {
    "missing": "missing (in the source, not live in the replica)",
    "extra": "extra (live in the replica, not in the source)",
    "different": "different",
    "unreplicable": "unreplicable (the replica cannot hold the item; see `cdc dlq list`)",
    "kept": 'kept (ttl_deletes = "ignore": deleted by TTL in the source, kept on purpose)',
}


def print_report(report: VerifyReport) -> None:
    scope = "" if report.sample is None else f" (sample {report.sample:g})"
    print(
        f"verify {report.source_table} -> {report.replica_table}{scope}: "
        f"{report.source_items} source items, {report.replica_rows} live replica rows checked"
    )
    for kind, label in _LABELS.items():
        count = report.counts[kind]
        if not count:
            continue
        print(f"{label}: {count}")
        for difference in report.examples[kind]:
            print(f"  {difference.describe()}")
        if count > len(report.examples[kind]):
            print(f"  ... and {count - len(report.examples[kind])} more")
    verdict = "identical" if report.identical else "DIFFERENT"
    print(f"result: {verdict} ({report.seconds:.1f}s)")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in (0, 1]")
    return value
