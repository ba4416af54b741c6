"""The lines of a DynamoDB export's data files as the records the apply path takes
(docs/architecture.md, "Export loads").

A full export line is `{"Item": {...}}` in DynamoDB JSON, the same AttributeValues a
Lambda event carries (binary as base64, numbers as text). An incremental export line is
`{"Metadata": {"WriteTimestampMicros": ...}, "Keys": {...}, "NewImage": {...},
"OldImage": {...}}`, NewImage absent when the item was deleted in the export's window.

Every item becomes a record through `snapshot_record` and nothing else: the snapshot
path of `cdc.sources.snapshots` decides the record's version, so an export load is
ordered against the stream exactly as a Scan backfill is.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from cdc.core.errors import CdcError
from cdc.sources.snapshots import Snapshot

if TYPE_CHECKING:
    from cdc.aws.clients import SourceTable


class ExportFileError(CdcError):
    """A data file that is not what the export's format promises: damaged, cut short,
    or of another kind; the message names the file and line."""


def snapshot_record(
    image: dict[str, Any],
    source: SourceTable,
    stream_arn: str,
    *,
    removed: bool = False,
    version: int = 0,
) -> dict[str, Any]:
    """The one place an export's item becomes a record: the snapshot path's own, at
    the export's place in the version order (`export_version_for`)."""
    snapshot = Snapshot(source.name, source.key_names, stream_arn, version)
    return snapshot.record(image, removed=removed)


def read_lines(
    stream: IO[bytes], where: str, start: int = 0, output_format: str = "DYNAMODB_JSON"
) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number from 1, parsed line or None for a blank one) of a gzip JSON Lines
    (or Ion text lines) file, skipping the first `start` lines (already committed by an
    earlier run)."""
    parse = _json_line
    if output_format == "ION":
        from cdc.sources.exports_ion import ion_line

        parse = ion_line
    number = 0
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as lines:
            for number, raw in enumerate(lines, 1):
                if number <= start:
                    continue
                if not raw.strip():
                    yield number, None
                    continue
                try:
                    parsed = parse(raw)
                except CdcError as exc:
                    raise ExportFileError(f"{where} line {number}: {exc}") from None
                yield number, parsed
    except (OSError, EOFError, zlib.error) as exc:
        raise ExportFileError(
            f"{where}: not a complete gzip file after line {number} ({exc}); "
            "the lines before it that were committed stay"
        ) from None


def _json_line(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise CdcError(f"not JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise CdcError("not a JSON object")
    return parsed


def line_record(
    line: dict[str, Any],
    source: SourceTable,
    stream_arn: str,
    *,
    incremental: bool,
    where: str,
    version: int = 0,
) -> dict[str, Any]:
    """The record of one export line, full or incremental, at `version`."""
    if not incremental:
        item = line.get("Item")
        if not isinstance(item, dict):
            raise ExportFileError(f'{where}: not a full export line ({{"Item": {{...}}}})')
        return snapshot_record(item, source, stream_arn, version=version)
    keys, new = line.get("Keys"), line.get("NewImage")
    if not isinstance(keys, dict) or not (new is None or isinstance(new, dict)):
        raise ExportFileError(
            f'{where}: not an incremental export line ({{"Keys": ..., "NewImage": ...}})'
        )
    if new is not None:
        return snapshot_record({**keys, **new}, source, stream_arn, version=version)
    # Deleted within the window: the snapshot record of the key, as a REMOVE.
    old = line.get("OldImage")
    image = {**old, **keys} if isinstance(old, dict) else dict(keys)
    return snapshot_record(image, source, stream_arn, removed=True, version=version)
