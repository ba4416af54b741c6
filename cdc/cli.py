"""The `cdc` command (also `python -m cdc`)."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cdc.config import DEFAULT_CLI_URL, Settings, load_settings
from cdc.errors import CdcError

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `48h`, `7d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 15m, 48h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdc",
        description="Replicate DynamoDB Streams into PostgreSQL, SQLite or MySQL/MariaDB.",
        epilog="The database comes from CDC_DATABASE_URL (or the TOML file named by "
        f"CDC_CONFIG); without one, the CLI uses {DEFAULT_CLI_URL}.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = commands.add_parser(
        "replay",
        help="apply saved Lambda events ({\"Records\": [...]} files)",
        description="Apply saved DynamoDB Streams Lambda events, each file as one batch, "
        "and print a summary. Exits 1 if any record could not be applied.",
    )
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE", help="event file, or - for stdin")
    replay.add_argument("--json", action="store_true", help="print the summary as JSON")

    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the bookkeeping tables (alembic)",
        description="Run the alembic migrations against the configured database.",
    )
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it")

    dlq = commands.add_parser("dlq", help="inspect and redrive dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = dlq_commands.add_parser("list", help="list dead letters")
    listing.add_argument("--table", help="only this source table")
    listing.add_argument("--since", type=parse_duration, help="only failures newer than this (e.g. 24h)")
    listing.add_argument(
        "--status", choices=("pending", "resolved", "all"), default="pending", help="default: pending"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = dlq_commands.add_parser("show", help="show one dead letter with its raw record")
    show.add_argument("id", type=int)
    redrive = dlq_commands.add_parser(
        "redrive",
        help="re-apply dead letters through the normal path",
        description="Re-apply pending dead letters. The sequence guard makes this safe: a "
        "dead letter older than the replica's row is found stale, not applied. Letters that "
        "apply are marked resolved (kept, not deleted); ones that fail again stay pending.",
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every pending dead letter")
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID")
    redrive.add_argument("--table", help="with --all: only this source table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(default_url=DEFAULT_CLI_URL)
        if args.command == "replay":
            return cmd_replay(settings, args.files, as_json=args.json)
        if args.command == "migrate":
            return cmd_migrate(settings, args.revision, args.sql)
        if args.command == "dlq":
            from cdc import dlq

            return dlq.run(settings, args)
    except CdcError as exc:
        print(f"cdc: error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")


def _engine(settings: Settings) -> Any:
    from cdc.db import make_engine

    assert settings.database_url is not None
    return make_engine(settings.database_url)


def read_event(path: Path) -> list[Any]:
    from cdc.errors import CdcError

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CdcError(f"cannot read {path}: {exc.strerror}") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CdcError(f"{path} is not JSON: {exc}") from None
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise CdcError(f"{path} is not a Lambda event: expected an object with a 'Records' list")
    return event["Records"]


def cmd_replay(settings: Settings, files: Sequence[Path], *, as_json: bool = False) -> int:
    from cdc.apply import Replicator

    batches = [(path, read_event(path)) for path in files]  # all readable before writing
    replicator = Replicator(_engine(settings), settings)
    totals = {"records": 0, "applied": 0, "stale": 0, "dead_lettered": 0, "failed": 0}
    for path, records in batches:
        result = replicator.process(records)
        summary = result.summary()
        for key in totals:
            totals[key] += summary[key]
        if as_json:
            print(json.dumps({"file": str(path), **summary}))
        else:
            line = (
                f"{path}: {summary['records']} records: {summary['applied']} applied, "
                f"{summary['stale']} stale, {summary['dead_lettered']} dead-lettered, "
                f"{summary['failed']} failed"
            )
            print(line + (f" ({result.error})" if result.error else ""))
    if not as_json and len(batches) > 1:
        print(
            f"total: {totals['records']} records: {totals['applied']} applied, "
            f"{totals['stale']} stale, {totals['dead_lettered']} dead-lettered, "
            f"{totals['failed']} failed"
        )
    if totals["dead_lettered"] and not as_json:
        print("dead letters: see `cdc dlq list`")
    print(f"database: {settings.masked_url()}", file=sys.stderr)
    return 1 if totals["failed"] else 0


def cmd_migrate(settings: Settings, revision: str, sql: bool) -> int:
    from cdc.migrate import upgrade

    upgrade(_engine(settings), settings.schema, revision, sql=sql)
    if not sql:
        print(f"migrated {settings.masked_url()} to {revision}")
    return 0


def now() -> datetime:
    return datetime.now(UTC)
