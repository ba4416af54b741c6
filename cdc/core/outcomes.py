"""What happened to a batch: per-record outcomes, per-table counts, dead letters and
stream progress; the handler's response, the summary and the checkpoints derive from it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson

from cdc.core.change import Change, RecordFormat
from cdc.core.decode import image_to_plain, to_plain
from cdc.core.errors import RecordError
from cdc.core.jsontext import dumps
from cdc.core.mapping import RowVersion, TableSpec
from cdc.core.numbers import canonical_number
from cdc.core.plan import TablePlan
from cdc.core.rawjson import _lossless_json, raw_json, storable


class Outcome(Enum):
    APPLIED = "applied"  # written, or found stale / superseded: nothing left to do
    DEAD_LETTERED = "dead_lettered"
    FAILED = "failed"  # not committed: reported to Lambda for redelivery


@dataclass
class TableStats:
    """Outcomes of one source table's records in one batch (metric dimensions)."""

    records: int = 0
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    failed: int = 0
    max_lag_s: float | None = None
    open_gaps: int | None = None  # the table's open gaps (README: Gaps and repair)


@dataclass
class BatchResult:
    outcomes: list[Outcome]
    records: Sequence[Any]
    applied: int = 0  # rows the batch changed
    stale: int = 0  # records that changed nothing: older, duplicate, superseded, ignored
    dead_lettered: int = 0
    tables: list[str] = field(default_factory=list)
    error: str | None = None  # why the batch (or part of it) was reported
    seconds: float = 0.0
    max_lag_s: float | None = None
    # (stream ARN, source table) → outcomes; ("", "") for records too broken to tell
    by_table: dict[tuple[str, str], TableStats] = field(default_factory=dict)
    # The records' format, which names the identifiers of failed records.
    source: RecordFormat | None = None

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o is Outcome.FAILED)

    @property
    def item_failures(self) -> list[str]:
        """What the source needs to deliver the records not handled again: for Lambda,
        the SequenceNumber of each (see `failure_identifiers` in
        cdc/sources/dynamodb_streams/records.py for a record without a usable one).
        Without a source, "" when anything failed: retry the whole batch."""
        failed = [i for i, o in enumerate(self.outcomes) if o is Outcome.FAILED]
        if self.source is None:
            return [""] if failed else []
        return self.source.failure_identifiers(self.records, failed)

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.item_failures]}

    def summary(self) -> dict[str, Any]:
        return {
            "records": len(self.outcomes),
            "applied": self.applied,
            "stale": self.stale,
            "dead_lettered": self.dead_lettered,
            "failed": self.failed,
            "tables": self.tables,
            "seconds": round(self.seconds, 4),
            "max_lag_s": None if self.max_lag_s is None else round(self.max_lag_s, 3),
            **({"error": self.error} if self.error else {}),
        }

    def _tally(self, prepared: Prepared, written: Written | None, now: datetime) -> None:
        """Fill `by_table` from the outcomes (the handler's log line and metrics)."""
        groups: dict[tuple[str, str], TableStats] = {}
        group_of: dict[int, tuple[str, str]] = {}
        earliest: dict[tuple[str, str], datetime] = {}
        for change in prepared.changes:
            key = (change.stream_arn, change.source_table)
            group_of[change.index] = key
            stats = groups.get(key)
            if stats is None:
                stats = groups[key] = TableStats()
            stats.records += 1
            moment = change.event_time
            if moment is not None and (key not in earliest or moment < earliest[key]):
                earliest[key] = moment
        unparsed = len(self.outcomes) - len(prepared.changes)
        if unparsed:  # records too broken to name their table
            groups.setdefault(("", ""), TableStats()).records += unparsed
        for index, outcome in enumerate(self.outcomes):
            if outcome is Outcome.APPLIED:
                continue
            stats = groups[group_of.get(index, ("", ""))]
            if outcome is Outcome.FAILED:
                stats.failed += 1
            else:
                stats.dead_lettered += 1
        for key, moment in earliest.items():
            groups[key].max_lag_s = max(0.0, (now - moment).total_seconds())
        lags = [s.max_lag_s for s in groups.values() if s.max_lag_s is not None]
        self.max_lag_s = max(lags) if lags else None
        if written is not None:
            for key, (applied, stale) in written.per_table.items():
                groups.setdefault(key, TableStats())
                groups[key].applied += applied
                groups[key].stale += stale
        self.by_table = groups


@dataclass
class Prepared:
    """The pure part of a batch: what to write, what is already known to be bad."""

    plans: list[TablePlan]
    dead: list[DeadLetter]
    ignored: list[Change]  # e.g. TTL expiries the table ignores
    changes: list[Change]
    records: Sequence[Any]
    unreadable: list[int] = field(default_factory=list)  # hydration failed: report them

    def dead_letter(
        self, row: RowVersion, spec: TableSpec[Any], kind: str, message: str
    ) -> DeadLetter:
        change = row.change
        return DeadLetter(change.index, self.records[change.index], kind, message, change, spec)


@dataclass
class Written:
    """What one successful attempt committed."""

    applied: int
    stale: int
    dead: list[DeadLetter]
    dead_letter_error: str | None
    per_table: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    unwritten: list[DeadLetter] = field(default_factory=list)  # dead letters not stored
    # Records of tables the database cannot take as the mapping says: reported, with why.
    reported: dict[int, str] = field(default_factory=dict)


@dataclass
class DeadLetter:
    index: int
    record: Any
    error_class: str
    message: str
    change: Change | None = None
    spec: TableSpec[Any] | None = None
    # The record's format: reads a sequence number and hints off a record that did not
    # parse (a letter with a change needs none).
    source: RecordFormat | None = None

    @property
    def sequence_number(self) -> str | None:
        if self.change is not None:
            return self.change.sequence_number
        return self.source.sequence_of(self.record) if self.source else None

    def fingerprint(self) -> str:
        """The letter's identity: one row per failing (source table, key, item version,
        error class), whichever path found it (a stream record, `cdc backfill`, a
        redrive), so the same failure found again updates its row (`attempts`) instead
        of adding one. See `_version_text` for what identifies a version. A record too
        broken to name its table and key is identified by its own text."""
        change = self.change
        if change is None:
            identity = "raw|" + raw_json(self.record)
        else:
            identity = "|".join(
                (
                    "key",
                    change.source_table,
                    _key_text(change),
                    _version_text(change),
                    self.error_class[:64],
                )
            )
        return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()

    def row(self, now: datetime) -> dict[str, Any]:
        change = self.change
        keys = None
        if change is not None:
            try:
                keys = dumps({k: to_plain(v, f"Keys.{k}") for k, v in change.keys.items()})
            except (RecordError, TypeError):  # the keys are what is wrong: see raw_record
                keys = None
        hints = self.source.hints(self.record) if change is None and self.source else {}
        source = change.source_table if change else hints.get("source_table")
        # Every text column beside the raw record holds text any database can store:
        # a record's strings are untrusted (a lone surrogate, U+0000), and a letter
        # that cannot be written leaves its record reported again and again.
        return {
            "fingerprint": self.fingerprint(),
            "status": "pending",
            "source_table": storable(source, 255),
            "target_table": storable(self.spec.qualified_name if self.spec else None, 255),
            "keys": storable(keys),
            "sequence_number": self.sequence_number,
            "version": change.sequence if change is not None else None,
            "stream_arn": storable(change.stream_arn if change else hints.get("stream_arn"), 512),
            "event_name": storable(change.event_name if change else hints.get("event_name"), 16),
            "error_class": storable(self.error_class, 64),
            "error_message": storable(self.message),
            "raw_record": raw_json(self.record),
            "attempts": 1,
            "first_failed_at": now,
            "last_failed_at": now,
            "resolved_at": None,
        }


def _key_text(change: Change) -> str:
    """A record's key as text, one per DynamoDB key whatever its spelling (`1.0` and
    `1` are one number) and whatever the order of its attributes."""
    parts = []
    for name in sorted(change.key_values):
        value = change.key_values[name]
        if isinstance(value, Decimal):
            value = canonical_number(value)
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        parts.append([name, change.key_types[name], value])
    return _lossless_json(parts)


def _version_text(change: Change) -> str:
    """What identifies the version of the item a record carries. With a NewImage, its
    content: a backfill's copy of an item (sequence 0: a Scan cannot know the sequence
    number) then matches the stream record that wrote that version, so an item found
    bad by both paths is one letter, not two; and two records of one key with the same
    content failing alike are one failure. Without a NewImage (a REMOVE, a KEYS_ONLY
    record), the sequence number."""
    image = change.new_image
    if image is None:
        return f"seq:{change.sequence}"
    try:
        # The plain form, keys sorted and numbers canonical: the same item whatever the
        # order of its attributes and set members, or the spelling of its numbers.
        plain = image_to_plain(image, "NewImage")
        text = orjson.dumps(plain, default=_canonical_default, option=orjson.OPT_SORT_KEYS)
    except (RecordError, TypeError):  # the image is what is wrong: its text identifies it
        return "raw:" + _lossless_json(image)
    return "item:" + text.decode("utf-8")


def _canonical_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(canonical_number(value))
    raise TypeError(f"{type(value).__name__} is not plain JSON")


@dataclass
class StreamProgress:
    stream_arn: str
    shard_id: str = ""
    last_sequence: int = 0
    last_event_time: datetime | None = None
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0

    def saw(self, change: Change) -> None:
        self.last_sequence = max(self.last_sequence, change.sequence)
        if change.event_time is not None and (
            self.last_event_time is None or change.event_time > self.last_event_time
        ):
            self.last_event_time = change.event_time
