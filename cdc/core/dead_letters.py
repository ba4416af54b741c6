"""A dead letter: a record cdc cannot apply, kept in `cdc_dead_letters` with why, so a
person can fix the cause and redrive it (README: Failure handling). Its identity (the
fingerprint) names the failing item version, whichever path found it. Pure."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from cdc.core.change import Change, RecordFormat
from cdc.core.decode import image_to_plain, to_plain
from cdc.core.errors import RecordError
from cdc.core.jsontext import dumps
from cdc.core.mapping import TableSpec
from cdc.core.numbers import canonical_number
from cdc.core.pii import Personal
from cdc.core.rawjson import _lossless_json, raw_json, storable


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
    # What the record's table never stores, for a letter without a spec (its table
    # could not be resolved): its raw record is redacted all the same.
    personal: Personal | None = None

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

    def redacted_record(self) -> Any:
        """The record as the letter keeps it: without the attributes its table never
        stores, hashed ones as digests (cdc/core/pii.py)."""
        personal = self.spec.options.personal if self.spec is not None else self.personal
        return self.record if personal is None else personal.redact_record(self.record)

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
            "raw_record": raw_json(self.redacted_record()),
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
