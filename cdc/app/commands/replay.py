"""`cdc replay FILE...`: apply saved Lambda events."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cdc.config import Settings
from cdc.core.errors import CdcError
from cdc.core.jsontext import loads_event

NAME = "replay"
HELP = 'apply saved Lambda events ({"Records": [...]} files)'
DESCRIPTION = (
    "Apply saved DynamoDB Streams Lambda events (as `sam local generate-event dynamodb "
    "update` writes them), each file as one batch, and print a summary. Exits 1 if any "
    "record could not be applied."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="event file, or - for stdin"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary per file")


def read_event(path: Path) -> list[Any]:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        raise CdcError(f"cannot read {path}: {exc.strerror}") from None
    try:
        # utf-8-sig: files saved by Windows tools start with a byte-order mark, which
        # RFC 8259 lets a parser ignore.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CdcError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        # Numbers keep their text, so a dead letter keeps the record exactly as the
        # file has it (`1.10`, `1e400`); the records are otherwise what Lambda's
        # runtime would parse from the same JSON.
        event = loads_event(text)
    except json.JSONDecodeError as exc:
        raise CdcError(f"{path} is not JSON: {exc}") from None
    except RecursionError:
        raise CdcError(f"{path} is nested too deeply to be a Lambda event") from None
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise CdcError(f"{path} is not a Lambda event: expected an object with a 'Records' list")
    records: list[Any] = event["Records"]
    return records


def _line(label: str, s: dict[str, Any]) -> str:
    return (
        f"{label}: {s['records']} records: {s['applied']} applied, {s['stale']} stale, "
        f"{s['dead_lettered']} dead-lettered, {s['failed']} failed"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    from cdc.app.engines import engine_for
    from cdc.jobs.replicate import Replicator

    files: Sequence[Path] = args.files
    batches = [(path, read_event(path)) for path in files]  # all readable before writing
    replicator = Replicator(engine_for(settings), settings)
    totals = {"records": 0, "applied": 0, "stale": 0, "dead_lettered": 0, "failed": 0}
    for path, records in batches:
        result = replicator.process(records)
        summary = result.summary()
        for key in totals:
            totals[key] += summary[key]
        if args.json:
            print(json.dumps({"file": str(path), **summary}))
        else:
            print(_line(str(path), summary) + (f" ({result.error})" if result.error else ""))
    if not args.json:
        if len(batches) > 1:
            print(_line("total", totals))
        if totals["dead_lettered"]:
            print("dead letters: see `cdc dlq list`")
    print(f"database: {settings.masked_url()}", file=sys.stderr)
    return 1 if totals["failed"] else 0
