"""Statements on the bookkeeping tables: dead letters and checkpoints."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

import orjson
from sqlalchemy import MetaData, Table, and_, case, func, literal_column, or_
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from cdc import schema as bk
from cdc.decode import JsonFloat, dumps, image_to_plain, to_plain
from cdc.dialects import Dialect
from cdc.errors import RecordError
from cdc.mapping import TableSpec
from cdc.records import Change, sequence_of, table_from_stream_arn
from cdc.types import canonical_number


@cache
def tables(schema: str | None) -> dict[str, Table]:
    """The bookkeeping tables, placed in `schema` (CDC_SCHEMA) when there is one."""
    if schema is None:
        return dict(bk.metadata.tables)
    metadata = MetaData()
    return {name: t.to_metadata(metadata, schema=schema) for name, t in bk.metadata.tables.items()}


@dataclass
class DeadLetter:
    index: int
    record: Any
    error_class: str
    message: str
    change: Change | None = None
    spec: TableSpec | None = None

    @property
    def sequence_number(self) -> str | None:
        return self.change.sequence_number if self.change else sequence_of(self.record)

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
        hints = _hints(self.record) if change is None else {}
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


def _hints(record: Any) -> dict[str, str]:
    """What can still be read off a malformed record, to help a person find it."""
    if not isinstance(record, dict):
        return {}
    hints: dict[str, str] = {}
    arn = record.get("eventSourceARN")
    if isinstance(arn, str):
        hints["stream_arn"] = arn
        with contextlib.suppress(RecordError):
            hints["source_table"] = table_from_stream_arn(arn)
    name = record.get("eventName")
    if isinstance(name, str):
        hints["event_name"] = name
    return hints


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str | None, limit: int | None = None) -> str | None:
    """`text` as any database can store it in a text column, cut to `limit`
    characters: U+0000 (PostgreSQL refuses it) and lone surrogates (no UTF-8 text can
    hold them) become their JSON escapes, `\u0000` and `\ud800`."""
    if text is None:
        return None
    if not text.isascii() or "\x00" in text:
        text = _UNSTORABLE.sub(_escape, text)
    return text if limit is None else text[:limit]


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def raw_json(record: Any) -> str:
    """The record as delivered, as JSON text; never fails (it must reach the table).

    Lossless: `json.loads` of the text (how Lambda's Python runtime parses an event,
    and how `cdc dlq redrive` reads a letter) gives back the record exactly. A number
    parsed by `cdc replay` keeps its text (`1.10`, `1e400`: see `JsonFloat`); a float
    without its text is written so that it reads back as the same float (an infinite
    one as `1e400`, NaN as `NaN`, as Python's json module reads them); a lone
    surrogate is written as its `\ud800` escape. The text is always storable.
    """
    try:
        text = orjson.dumps(record, default=_raw_default)
    except TypeError:  # a lone surrogate, a foreign object, nesting orjson refuses
        return _careful_json(record)
    if b"null" in text and _has_nonfinite(record):  # orjson writes inf and NaN as null
        return _careful_json(record)
    return text.decode("utf-8")


def _raw_default(value: Any) -> Any:
    if isinstance(value, JsonFloat):
        return orjson.Fragment(value.json_text)
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _has_nonfinite(value: Any) -> bool:
    if type(value) is float:
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nonfinite(v) for v in value)
    return False


def _careful_json(record: Any) -> str:
    try:
        return _lossless_json(record)
    except RecursionError:
        # Nested deeper than Python's json module (so Lambda's runtime) parses: this
        # record cannot have been delivered as JSON. Keep what can be shown of it.
        return json.dumps({"unserializable_record": reprlib.repr(record)})


def _lossless_json(value: Any) -> str:
    parts: list[str] = []
    _write_json(value, parts)
    return "".join(parts)


def _write_json(value: Any, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, str):
        out.append(_json_string(value))
    elif isinstance(value, JsonFloat):
        out.append(value.json_text)
    elif isinstance(value, float):
        out.append(_float_text(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, Decimal):
        out.append(str(value) if value.is_finite() else _float_text(float(value)))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_json_string(key if isinstance(key, str) else str(key)))
            out.append(":")
            _write_json(item, out)
        out.append("}")
    elif isinstance(value, list | tuple | set | frozenset):
        if isinstance(value, set | frozenset):
            try:
                value = sorted(value)
            except TypeError:
                value = list(value)
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write_json(item, out)
        out.append("]")
    elif isinstance(value, bytes | bytearray):
        out.append(_json_string(base64.b64encode(value).decode("ascii")))
    else:
        out.append(_json_string(repr(value)))


def _json_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    if not text.isascii():
        encoded = _SURROGATE.sub(_escape, encoded)  # escapes are ASCII: only raw ones match
    return encoded


_SURROGATE = re.compile("[\ud800-\udfff]")


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "1e400" if value > 0 else "-1e400"
    return float.__repr__(value)


def write_dead_letters(
    conn: Connection,
    dialect: Dialect,
    schema: str | None,
    letters: Sequence[DeadLetter],
    now: datetime,
) -> None:
    table = tables(schema)["cdc_dead_letters"]
    # One row per fingerprint: the same failure twice in one batch is one dead letter,
    # holding the newest version.
    newest: dict[str, dict[str, Any]] = {}
    for row in (d.row(now) for d in letters):
        seen = newest.get(row["fingerprint"])
        if seen is None or not _older(row["sequence_number"], seen["sequence_number"]):
            newest[row["fingerprint"]] = row
    unique = [newest[f] for f in sorted(newest)]
    c = table.c

    def assign(new: Any) -> dict[str, Any]:
        # A letter holds the newest record of its failure: an older one found again (a
        # replayed batch, a backfill's copy of the item: sequence 0) only counts an
        # attempt. Sequence numbers are decimal text without leading zeros (as Lambda
        # delivers them), compared as numbers: the longer is the larger.
        old_seq, new_seq = c.sequence_number, new["sequence_number"]
        newer = or_(
            old_seq.is_(None),
            new_seq.is_(None),
            func.length(new_seq) > func.length(old_seq),
            and_(func.length(new_seq) == func.length(old_seq), new_seq >= old_seq),
        )

        def pick(name: str) -> Any:
            return case((newer, new[name]), else_=c[name])

        # MySQL applies these in the table's column order, later ones seeing earlier
        # results: `newer` gives the same answer after sequence_number is updated (it
        # becomes the larger of the two), so the order does not matter.
        return {
            **{
                name: pick(name)
                for name in (
                    "status",
                    "source_table",
                    "target_table",
                    "keys",
                    "stream_arn",
                    "event_name",
                    "error_class",
                    "error_message",
                    "raw_record",
                    "resolved_at",
                    "sequence_number",
                )
            },
            # Inline, not a bound parameter: PyMySQL's executemany refuses parameters
            # after VALUES (and would send the letters one statement each).
            "attempts": c.attempts + literal_column("1"),
            "last_failed_at": new["last_failed_at"],
        }

    stmt = dialect.merge(table, None, assign=assign, conflict=["fingerprint"])
    conn.execute(stmt, unique)


def _older(sequence: str | None, than: str | None) -> bool:
    if sequence is None or than is None:
        return False
    return (len(sequence), sequence) < (len(than), than)


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


def write_checkpoints(
    conn: Connection,
    dialect: Dialect,
    schema: str | None,
    progress: Sequence[StreamProgress],
    now: datetime,
) -> None:
    rows = [
        {
            "stream_arn": p.stream_arn,
            "shard_id": p.shard_id,
            "last_sequence": p.last_sequence,
            "last_event_time": p.last_event_time,
            "records_applied": p.applied,
            "records_stale": p.stale,
            "records_dead_lettered": p.dead_lettered,
            "updated_at": now,
        }
        for p in sorted(progress, key=lambda p: (p.stream_arn, p.shard_id))
    ]
    conn.execute(_checkpoint_upsert(dialect, schema), rows)


@lru_cache(maxsize=64)
def _checkpoint_upsert(dialect: Dialect, schema: str | None) -> Insert:
    """Built once per dialect and schema: building it costs more than running it."""
    table = tables(schema)["cdc_checkpoints"]
    c = table.c
    return dialect.merge(
        table,
        None,
        assign=lambda new: {
            # Several shards of one stream share the Lambda row: keep the highest.
            "last_sequence": case(
                (new["last_sequence"] > c.last_sequence, new["last_sequence"]),
                else_=c.last_sequence,
            ),
            "last_event_time": case(
                (new["last_event_time"] > c.last_event_time, new["last_event_time"]),
                else_=func.coalesce(c.last_event_time, new["last_event_time"]),
            ),
            "records_applied": c.records_applied + new["records_applied"],
            "records_stale": c.records_stale + new["records_stale"],
            "records_dead_lettered": c.records_dead_lettered + new["records_dead_lettered"],
            "updated_at": new["updated_at"],
        },
    )
