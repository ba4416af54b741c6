"""`cdc dlq list | show | redrive`: dead letters for people."""

from __future__ import annotations

import argparse
import json
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update

from cdc.app.engines import engine_for
from cdc.config import Settings
from cdc.core.errors import CdcError
from cdc.core.jsontext import dumps, loads
from cdc.core.outcomes import Outcome
from cdc.jobs.replicate import Replicator
from cdc.sources.formats import ANY_RECORDS
from cdc.sql.bookkeeping import tables
from cdc.sql.migrations import ensure_bookkeeping

NAME = "dlq"
HELP = "list, show and redrive dead letters"
DESCRIPTION = "Inspect the records that were dead-lettered, and re-apply them once fixed."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cdc.app.cli import parse_duration

    actions = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list dead letters")
    listing.add_argument("--table", help="only this source table")
    listing.add_argument(
        "--since", type=parse_duration, help="only failures newer than this (e.g. 24h)"
    )
    listing.add_argument(
        "--status",
        choices=("pending", "resolved", "all"),
        default="pending",
        help="default: pending",
    )
    listing.add_argument(
        "--limit", type=int, default=50, help="at most this many rows (default 50)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="show one dead letter with its raw record")
    show.add_argument("id", type=int)
    redrive = actions.add_parser(
        "redrive",
        help="re-apply dead letters through the normal path",
        description="Re-apply pending dead letters. The sequence guard makes this safe: a "
        "dead letter older than the replica's row is found stale, not applied. Letters that "
        "apply are marked resolved (kept, not deleted); ones that fail again stay pending.",
    )
    redrive.add_argument("--all", action="store_true", help="every pending dead letter")
    redrive.add_argument("ids", nargs="*", type=int, default=[], metavar="ID")
    redrive.add_argument("--table", help="with --all: only this source table")


def run(settings: Settings, args: argparse.Namespace) -> int:
    engine = engine_for(settings)
    ensure_bookkeeping(engine, settings.schema)
    if args.dlq_command == "list":
        return list_letters(engine, settings, args)
    if args.dlq_command == "show":
        return show_letter(engine, settings, args.id)
    if bool(args.all) == bool(args.ids):
        raise CdcError("cdc dlq redrive: give dead letter IDs or --all")
    return redrive(engine, settings, ids=args.ids, all_=args.all, table=args.table)


def list_letters(engine: Engine, settings: Settings, args: argparse.Namespace) -> int:
    t = tables(settings.schema)["cdc_dead_letters"]
    query = (
        select(
            t.c.id,
            t.c.status,
            t.c.source_table,
            t.c["keys"],
            t.c.sequence_number,
            t.c.error_class,
            t.c.error_message,
            t.c.attempts,
            t.c.last_failed_at,
        )
        .order_by(t.c.id)
        .limit(args.limit)
    )
    if args.status != "all":
        query = query.where(t.c.status == args.status)
    if args.table:
        query = query.where(t.c.source_table == args.table)
    if args.since:
        query = query.where(t.c.last_failed_at >= datetime.now(UTC) - args.since)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    if args.json:
        for row in rows:
            fields = {str(k): _jsonable(v) for k, v in row.items()}
            # The keys as the object they are, not JSON text inside JSON.
            fields["keys"] = _keys_object(row["keys"])
            print(dumps(fields))  # numbers exact, as everywhere in cdc
        return 0
    if not rows:
        print("no dead letters" + (f" ({args.status})" if args.status != "all" else ""))
        return 0
    table: list[list[str]] = [["ID", "STATUS", "TABLE", "KEYS", "TRIES", "LAST FAILED", "ERROR"]]
    for row in rows:
        when = row["last_failed_at"]
        when_text = when.strftime("%Y-%m-%d %H:%M:%S") if isinstance(when, datetime) else str(when)
        table.append(
            [
                str(row["id"]),
                str(row["status"]),
                row["source_table"] or "-",
                row["keys"] or "-",
                str(row["attempts"]),
                when_text,
                f"{row['error_class']}: {row['error_message']}",
            ]
        )
    for line in format_table(table, widths=(0, 0, 24, 24, 0, 0, 80), right=(0, 4)):
        print(line)
    return 0


def format_table(
    rows: Sequence[Sequence[str]], widths: Sequence[int], right: Sequence[int] = ()
) -> list[str]:
    """Columns lined up as a terminal shows them: each cell cut to its width (0: as
    wide as its widest cell) and padded by display width (a CJK character takes two
    columns, a combining accent none; control characters become spaces)."""
    cells = [
        [_cut(_printable(cell), width or 10**6) for cell, width in zip(row, widths, strict=True)]
        for row in rows
    ]
    sizes = [max(display_width(row[i]) for row in cells) for i in range(len(widths))]
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            if i == len(row) - 1:
                parts.append(cell)  # the last column is not padded
                continue
            pad = " " * (sizes[i] - display_width(cell))
            parts.append(pad + cell if i in right else cell + pad)
        lines.append("  ".join(parts))
    return lines


def display_width(text: str) -> int:
    """Columns a terminal gives `text`: East Asian wide and fullwidth characters two,
    combining marks and zero-width characters none."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _printable(text: str) -> str:
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


def _keys_object(keys: Any) -> Any:
    if isinstance(keys, str):
        try:
            return loads(keys)
        except ValueError:
            return keys
    return keys


def show_letter(engine: Engine, settings: Settings, letter_id: int) -> int:
    t = tables(settings.schema)["cdc_dead_letters"]
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.id == letter_id)).mappings().first()
    if row is None:
        raise CdcError(f"no dead letter with id {letter_id}")
    for key, value in row.items():
        if key == "raw_record":
            continue
        print(f"{key:16} {_jsonable(value)}")
    print("raw_record:")
    try:
        print(json.dumps(json.loads(row["raw_record"]), indent=2, ensure_ascii=False))
    except ValueError:
        print(row["raw_record"])
    return 0


def redrive(
    engine: Engine, settings: Settings, *, ids: Sequence[int], all_: bool, table: str | None
) -> int:
    t = tables(settings.schema)["cdc_dead_letters"]
    query = select(t.c.id, t.c.raw_record).where(t.c.status == "pending").order_by(t.c.id)
    if not all_:
        query = query.where(t.c.id.in_(list(ids)))
    if table:
        query = query.where(t.c.source_table == table)
    with engine.connect() as conn:
        letters = conn.execute(query).all()
    if not all_:
        missing = set(ids) - {row.id for row in letters}
        if missing:
            raise CdcError(f"no pending dead letter with id {', '.join(map(str, sorted(missing)))}")
    if not letters:
        print("nothing to redrive")
        return 0
    records = [json.loads(row.raw_record) for row in letters]
    # A letter may hold any source's record (a stream's, a backfill's snapshot item).
    result = Replicator(engine, settings, records=ANY_RECORDS).process(records)
    resolved = [
        row.id for row, o in zip(letters, result.outcomes, strict=True) if o is Outcome.SETTLED
    ]
    if resolved:
        with engine.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.id.in_(resolved), t.c.status == "pending")
                .values(status="resolved", resolved_at=datetime.now(UTC))
            )
    print(
        f"redrove {len(letters)} dead letters: {len(resolved)} resolved "
        f"({result.applied} applied, {result.stale} already superseded), "
        f"{result.dead_lettered} failed again, {result.failed} not committed"
        + (f" ({result.error})" if result.error else "")
    )
    return 1 if result.failed or result.dead_lettered else 0


def _cut(text: str, width: int) -> str:
    """`text` in at most `width` display columns, an ellipsis marking a cut."""
    text = text.replace("\n", " ")
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        size = display_width(char)
        if used + size > width - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
