"""Source tables → replica tables, and records → row values. Pure (no connection).

Document mode (DESIGN §3) needs no configuration: a table's key columns come from the
first record seen for it, every attribute lands in the `item` JSON column. The table
options (deletes, ttl_deletes, nul, ...) come from the configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Boolean, Column, DateTime, MetaData, Table
from sqlalchemy.types import TypeEngine

from cdc.decode import dumps, find_nul, image_to_plain, map_strings, to_python
from cdc.errors import NameCollision, RecordError
from cdc.naming import NameTable, fit, snake
from cdc.records import Change
from cdc.types import JsonDocument, SequenceNumber

SEQ = "_cdc_seq"
DELETED = "_cdc_deleted"
EVENT_TIME = "_cdc_event_time"
APPLIED_AT = "_cdc_applied_at"
ITEM = "item"
BOOKKEEPING_COLUMNS = (SEQ, DELETED, EVENT_TIME, APPLIED_AT)

Deletes = Literal["soft", "hard"]
TtlDeletes = Literal["delete", "ignore"]
NulPolicy = Literal["reject", "strip", "replace"]
NUL_REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class TableOptions:
    deletes: Deletes = "soft"
    ttl_deletes: TtlDeletes = "delete"
    nul: NulPolicy = "reject"
    auto_create: bool = True
    hydrate: bool = False


@dataclass(frozen=True, slots=True)
class KeyColumn:
    attribute: str
    column: str
    tag: str  # S | N | B


@dataclass(slots=True)
class RowVersion:
    """What one record asks of the replica: the row for `key` as of `sequence`."""

    key: tuple[Any, ...]
    sequence: int
    deleted: bool
    # Non-key column values; None for a delete that carries no image (KEYS_ONLY or
    # NEW_IMAGE streams): the stored values are then left as they were.
    values: dict[str, Any] | None
    event_time: datetime | None
    change: Change


class TableSpec:
    """One replica table: its SQLAlchemy `Table`, key columns and options, and the
    conversion of a record into a `RowVersion` for it."""

    def __init__(
        self,
        source_table: str,
        table: Table,
        keys: tuple[KeyColumn, ...],
        options: TableOptions,
        values_of: Callable[[dict[str, Any], str, TableOptions], dict[str, Any]],
    ) -> None:
        self.source_table = source_table
        self.table = table
        self.keys = keys
        self.options = options
        self._values_of = values_of
        self.key_names = tuple(k.column for k in keys)
        self.value_names = tuple(
            c.name for c in table.columns if c.name not in self.key_names and c.name not in BOOKKEEPING_COLUMNS
        )

    @property
    def qualified_name(self) -> str:
        return self.table.fullname

    def key_of(self, change: Change) -> tuple[Any, ...]:
        expected = {k.attribute: k.tag for k in self.keys}
        actual = {name: next(iter(av)) for name, av in change.keys.items()}
        if actual != expected:
            raise RecordError(
                f"record keys {_describe(actual)} do not match the key of replica table "
                f"{self.qualified_name!r}: {_describe(expected)}",
                kind="key_mismatch",
            )
        values = []
        for key in self.keys:
            value = to_python(change.keys[key.attribute], f"Keys.{key.attribute}")
            if isinstance(value, str) and "\x00" in value:
                # Never stripped or replaced: that could merge two distinct keys.
                raise RecordError(
                    f"key attribute {key.attribute!r} contains U+0000, which the database "
                    "cannot store in a key", kind="nul")
            values.append(value)
        return tuple(values)

    def row_version(self, change: Change) -> RowVersion | None:
        """The record as a row version, or None when the table ignores it (TTL)."""
        key = self.key_of(change)
        if change.is_remove:
            if change.is_ttl_expiry and self.options.ttl_deletes == "ignore":
                return None
            image, where = change.old_image, "OldImage"
            values = None if image is None else self._values_of(image, where, self.options)
            return RowVersion(key, change.sequence, True, values, change.event_time, change)
        if change.new_image is None:
            raise RecordError(
                f"{change.event_name} record has no NewImage (the stream's view type is "
                f"KEYS_ONLY or OLD_IMAGE); set hydrate = true for table {self.source_table!r} "
                "or switch the stream to NEW_IMAGE or NEW_AND_OLD_IMAGES",
                kind="missing_image",
            )
        values = self._values_of(change.new_image, "NewImage", self.options)
        return RowVersion(key, change.sequence, False, values, change.event_time, change)


def _describe(keys: dict[str, str]) -> str:
    return "(" + ", ".join(f"{name} {tag}" for name, tag in sorted(keys.items())) + ")"


def apply_nul_policy(plain: Any, path: str, policy: NulPolicy) -> Any:
    """Postgres cannot store U+0000 in text or jsonb; the table's `nul` option decides."""
    if policy == "strip":
        return map_strings(plain, lambda s: s.replace("\x00", ""))
    if policy == "replace":
        return map_strings(plain, lambda s: s.replace("\x00", NUL_REPLACEMENT))
    found = find_nul(plain, path)
    raise RecordError(
        f"{found} contains U+0000, which PostgreSQL cannot store; set nul = \"strip\" or "
        "\"replace\" for this table to accept it",
        kind="nul",
    )


def document_values(image: dict[str, Any], where: str, options: TableOptions) -> dict[str, Any]:
    plain = image_to_plain(image, where)
    text = dumps(plain)
    if "\\u0000" in text and find_nul(plain, where) is not None:
        text = dumps(apply_nul_policy(plain, where, options.nul))
    return {ITEM: text}


@dataclass
class DocumentTables:
    """Builds document-mode `TableSpec`s on first sight of a source table."""

    metadata: MetaData
    schema: str | None
    max_identifier_bytes: int
    key_type: Callable[[str], TypeEngine[Any]]
    options_for: Callable[[str], TableOptions]
    table_names: NameTable = field(default_factory=lambda: NameTable("source tables"))

    def spec_for(self, change: Change) -> TableSpec:
        source = change.source_table
        name = fit(snake(source), self.max_identifier_bytes, source)
        try:
            self.table_names.claim(name, source)
        except NameCollision as exc:
            raise RecordError(str(exc), kind="name_collision") from None
        columns = NameTable(
            f"attributes of table {source!r}",
            reserved={n: f"<cdc column {n}>" for n in (ITEM, *BOOKKEEPING_COLUMNS)},
        )
        keys = []
        for attribute in sorted(change.keys):
            column = fit(snake(attribute), self.max_identifier_bytes, attribute)
            try:
                columns.claim(column, attribute)
            except NameCollision as exc:
                raise RecordError(str(exc), kind="name_collision") from None
            keys.append(KeyColumn(attribute, column, next(iter(change.keys[attribute]))))
        table = Table(
            name,
            self.metadata,
            *(Column(k.column, self.key_type(k.tag), primary_key=True) for k in keys),
            Column(ITEM, JsonDocument()),
            *bookkeeping_columns(),
            schema=self.schema,
            extend_existing=True,
        )
        return TableSpec(source, table, tuple(keys), self.options_for(source), document_values)


def bookkeeping_columns() -> list[Column[Any]]:
    return [
        Column(SEQ, SequenceNumber(), nullable=False),
        Column(DELETED, Boolean(), nullable=False),
        Column(EVENT_TIME, DateTime(timezone=True)),
        Column(APPLIED_AT, DateTime(timezone=True), nullable=False),
    ]
