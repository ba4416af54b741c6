"""`cdc purge`: remove tombstones (and soft-deleted rows) older than the stream can
redeliver."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cdc.config import Settings
from cdc.core.errors import CdcError

NAME = "purge"
HELP = "remove tombstones and, if asked, soft-deleted rows older than a duration"
DESCRIPTION = (
    "Tombstones (hard deletes) and soft-deleted rows stop older records from resurrecting "
    "a deleted key. A stream keeps records for 24 hours, so once a tombstone is older than "
    "that (plus the time a record can wait in retries), nothing can arrive to need it."
)
# DynamoDB Streams keep records 24 hours; a Lambda retrying a batch can hold one a little
# longer. Purging younger marks could let a redelivered older record resurrect a row.
MINIMUM_AGE = timedelta(hours=24)


@dataclass(frozen=True)
class Duration:
    """A duration as the user typed it (`1h`), for messages, and its value."""

    text: str
    value: timedelta


def _duration(text: str) -> Duration:
    from cdc.app.cli import parse_duration

    return Duration(text.strip(), parse_duration(text))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="e.g. 48h or 7d; at least 24h unless --force",
    )
    parser.add_argument(
        "--soft-deleted",
        action="store_true",
        help="also delete soft-deleted rows (_cdc_deleted) applied before then, "
        "in every replica table",
    )
    parser.add_argument("--force", action="store_true", help="allow a duration under 24h")
    parser.add_argument("--dry-run", action="store_true", help="count, do not delete")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from cdc.app.engines import engine_for
    from cdc.jobs.purge import purge
    from cdc.sql.migrations import ensure_bookkeeping

    older_than: Duration = args.older_than
    if older_than.value < MINIMUM_AGE and not args.force:
        raise CdcError(
            f"--older-than {older_than.text} is shorter than the stream's 24-hour retention: "
            "a redelivered older record could bring a purged row back (use --force to insist)"
        )
    engine = engine_for(settings)
    ensure_bookkeeping(engine, settings.schema)
    cutoff = datetime.now(UTC) - older_than.value
    verb = "would delete" if args.dry_run else "deleted"
    purge(
        engine,
        settings.schema,
        cutoff,
        soft_deleted=args.soft_deleted,
        dry_run=args.dry_run,
        on_tombstones=lambda count: print(
            f"{verb} {count} tombstones older than {cutoff:%Y-%m-%d %H:%M:%S} UTC"
        ),
        on_table=lambda name, count: print(f"{verb} {count} soft-deleted rows from {name}"),
    )
    return 0
