"""Items read from the source table itself (a Scan for `cdc backfill` and `cdc verify`,
an export's data files) as changes. A snapshot is no stream record: it has no sequence
number of its own, so it is placed explicitly in the version order
(`Snapshot.sequence`, `snapshot_version_for`): below every record of the stream it is
taken beside and above every record of each earlier stream of the table, so a snapshot
item never overwrites a version streamed since (docs/architecture.md, section 3).

A `Snapshot` builds Changes directly. The raw record a dead letter keeps of a snapshot
item is `Snapshot.record(item)`, a small envelope of its own (`eventSource`
"cdc:snapshot") that `SNAPSHOT_RECORDS` reads back, so `cdc dlq redrive` applies it
again exactly as the backfill would have. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdc.core.change import Change
from cdc.core.errors import MalformedRecord
from cdc.core.keys import check_keys
from cdc.core.versions import sequence_of, snapshot_version, stream_generation

SNAPSHOT_SOURCE = "cdc:snapshot"  # the eventSource of a snapshot item's envelope
STREAM_LABEL = "backfill"  # the synthetic stream label of backfilled items
# Every synthetic label of a snapshot's records (backfill and export loads, verify,
# repair): a real stream's label is a timestamp.
SNAPSHOT_LABELS = frozenset({STREAM_LABEL, "verify", "repair"})
SNAPSHOT_SEQUENCE = 0  # below every version: never overwrites


def snapshot_version_for(stream_arn: str | None) -> int:
    """The version of a snapshot taken while `stream_arn` (the table's latest stream,
    None if it never had one) is consumed: its generation * 10^40 (README: Stream
    generations)."""
    return snapshot_version(stream_generation(stream_arn or ""))


def export_version_for(stream_arn: str | None, export_time: datetime) -> int:
    """The version of an export taken at `export_time` and loaded while `stream_arn` is
    consumed: that stream's snapshot version if the stream began before the export
    (the export is a state of the table that stream's records follow), else 0, below
    every record, since the export predates this stream and the records of the stream
    before it that came after the export are not known (README: Stream generations)."""
    generation = stream_generation(stream_arn or "")
    if generation and generation <= export_time.timestamp() * 1000:
        return snapshot_version(generation)
    return SNAPSHOT_SEQUENCE


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of a source table: which table, its key attributes, the synthetic stream
    ARN its checkpoints and dead letters are filed under, and its place in the version
    order."""

    table: str
    key_names: tuple[str, ...]
    stream_arn: str
    sequence: int = SNAPSHOT_SEQUENCE

    def change(self, item: Mapping[str, Any], index: int = 0, *, removed: bool = False) -> Change:
        """An item (AttributeValues, wire form: binary as base64) as an INSERT; with
        `removed`, the item (its key at least) as a REMOVE: an incremental export's
        deletion, which, placed like every snapshot, deletes only what the stream never
        wrote."""
        if not isinstance(item, Mapping):
            raise MalformedRecord(f"snapshot item is a {type(item).__name__}, not an object")
        missing = [name for name in self.key_names if name not in item]
        if missing:
            raise MalformedRecord(
                f"the item has no key attribute {', '.join(map(repr, missing))} "
                f"(the key of {self.table!r} is {', '.join(self.key_names)})"
            )
        keys = {name: item[name] for name in self.key_names}
        key_types, key_values = check_keys(keys, "the item's key")
        return Change(
            index=index,
            sequence=self.sequence,
            # No position of its own: its version's sequence part (0) stands in.
            sequence_number=str(sequence_of(self.sequence)),
            stream_arn=self.stream_arn,
            source_table=self.table,
            event_name="REMOVE" if removed else "INSERT",
            keys=keys,
            key_types=key_types,
            key_values=key_values,
            new_image=None if removed else dict(item),
            old_image=dict(item) if removed else None,
            event_time=None,
            is_ttl_expiry=False,
        )

    def record(self, item: Mapping[str, Any], *, removed: bool = False) -> dict[str, Any]:
        """The raw record of an item: what a dead letter keeps, and what the replicator
        takes from a backfill or an export load (SNAPSHOT_RECORDS parses it)."""
        return {
            "eventSource": SNAPSHOT_SOURCE,
            "eventName": "REMOVE" if removed else "INSERT",
            "eventSourceARN": self.stream_arn,
            "tableName": self.table,
            "keyNames": list(self.key_names),
            "sequence": str(self.sequence),
            "Item": dict(item),
        }


def _snapshot_of(record: object) -> tuple[Snapshot, Any, bool]:
    if not isinstance(record, dict) or record.get("eventSource") != SNAPSHOT_SOURCE:
        raise MalformedRecord(f"not a {SNAPSHOT_SOURCE} record")
    table, arn = record.get("tableName"), record.get("eventSourceARN")
    names, sequence = record.get("keyNames"), record.get("sequence")
    if not (
        isinstance(table, str)
        and isinstance(arn, str)
        and isinstance(names, list)
        and names
        and all(isinstance(n, str) for n in names)
        and isinstance(sequence, str)
        and sequence.isdigit()
        and sequence.isascii()
    ):
        raise MalformedRecord(
            f"{SNAPSHOT_SOURCE} record lacks tableName, eventSourceARN, keyNames or sequence"
        )
    event_name = record.get("eventName", "INSERT")
    if event_name not in ("INSERT", "REMOVE"):
        raise MalformedRecord(f"{SNAPSHOT_SOURCE} record has eventName {event_name!r}")
    snapshot = Snapshot(table, tuple(names), arn, int(sequence))
    return snapshot, record.get("Item"), event_name == "REMOVE"


class SnapshotRecords:
    """The RecordFormat of snapshot envelopes (`Snapshot.record`)."""

    @staticmethod
    def parse(record: Any, index: int) -> Change:
        snapshot, item, removed = _snapshot_of(record)
        return snapshot.change(item, index, removed=removed)

    @staticmethod
    def sequence_of(record: Any) -> str | None:
        sequence = record.get("sequence") if isinstance(record, dict) else None
        return sequence if isinstance(sequence, str) and sequence.isdigit() else None

    @staticmethod
    def hints(record: Any) -> dict[str, str]:
        if not isinstance(record, dict):
            return {}
        name = record.get("eventName", "INSERT")
        hints = {"event_name": name if isinstance(name, str) else "INSERT"}
        for hint, field in (("source_table", "tableName"), ("stream_arn", "eventSourceARN")):
            value = record.get(field)
            if isinstance(value, str):
                hints[hint] = value
        return hints

    @staticmethod
    def failure_identifiers(records: Sequence[Any], failed: Iterable[int]) -> list[str]:
        """None: nothing redelivers a snapshot. A backfill that could not commit its
        page stops and is run again from the last committed page."""
        return []


SNAPSHOT_RECORDS = SnapshotRecords()
