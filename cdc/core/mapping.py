"""Source tables → replica tables, and records → row values. Pure (no connection).

Two modes behind one `TableSpec`:

* document mode (README: Replica tables; zero configuration): key columns come from the first record
  seen for a table, the whole item lands in the `item` JSON column;
* typed mode (a `[tables.X.columns]` mapping): declared columns, converted strictly
  (`cdc.core.convert`), with unmapped attributes kept in an `extra` JSON column or dropped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from cdc.core.change import Change
from cdc.core.convert import ColumnType, ConversionError, Converter, converter
from cdc.core.decode import find_nul, image_to_plain, map_strings
from cdc.core.drift_columns import DriftColumns
from cdc.core.errors import RecordError
from cdc.core.jsontext import dumps, image_to_json
from cdc.core.numbers import canonical_number
from cdc.core.pii import Personal

log = logging.getLogger("cdc")

SEQ = "_cdc_seq"
DELETED = "_cdc_deleted"
EVENT_TIME = "_cdc_event_time"
APPLIED_AT = "_cdc_applied_at"
ITEM = "item"
EXTRA = "extra"
BOOKKEEPING_COLUMNS = (SEQ, DELETED, EVENT_TIME, APPLIED_AT)


def is_reserved_table(name: str) -> bool:
    """cdc's own tables (`cdc_dead_letters`, `cdc_checkpoints`, …, and any `cdc_*` name
    it may add) and alembic's: never a replica table (README, Replica tables)."""
    lowered = name.lower()
    return lowered.startswith("cdc_") or lowered == "alembic_version"


Deletes = Literal["soft", "hard"]
TtlDeletes = Literal["delete", "ignore"]
NulPolicy = Literal["reject", "strip", "replace"]
Unmapped = Literal["extra", "drop"]
Drift = Literal["off", "add_columns"]
NUL_REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class TableOptions:
    deletes: Deletes = "soft"
    ttl_deletes: TtlDeletes = "delete"
    nul: NulPolicy = "reject"
    auto_create: bool = True
    hydrate: bool = False
    # New attributes of one type get a nullable column (README, "Drift"); typed tables.
    drift: Drift = "off"
    # Attributes never stored or stored hashed (cdc/core/pii.py); from the table's
    # `attributes`, not an option of [defaults].
    personal: Personal | None = None


@dataclass(frozen=True)
class ColumnConfig:
    """One typed column: where its value comes from and what it must fit."""

    attribute: str  # as written in the mapping: "Total", "Address.City"
    column: str
    type: ColumnType
    required: bool = False
    time_format: str = "auto"

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.attribute.split("."))


@dataclass(frozen=True)
class TableConfig:
    """A source table's entry in the mapping file."""

    source: str
    options: TableOptions = field(default_factory=TableOptions)
    table: str | None = None  # target table name; default snake(source)
    schema: str | None = None  # default CDC_SCHEMA
    keys: tuple[str, ...] = ()  # key attributes, in primary-key order (typed mode)
    columns: tuple[ColumnConfig, ...] = ()
    unmapped: Unmapped = "extra"
    # Attributes kept out of `extra` though no column takes them (an entity table's
    # source key attributes, held by its parsed key columns; its child tables' lists).
    omit: tuple[str, ...] = ()
    # Entity routing (cdc/core/entities.py): EntityConfig, in declaration order.
    entities: tuple[Any, ...] = ()
    unmatched: Literal["document", "dead_letter"] = "document"

    @property
    def typed(self) -> bool:
        return bool(self.columns)


@dataclass(frozen=True, slots=True)
class KeyColumn:
    attribute: str
    column: str
    tag: str | None  # document mode: the DynamoDB type every record must carry
    convert: Converter


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
    # A lazy version (`row_version(..., lazy=True)`) keeps its image here until
    # `TableSpec.materialize` builds `values` from it: the Postgres path builds them
    # chunk by chunk while the server applies the previous chunk.
    image: dict[str, Any] | None = None
    where: str = ""
    # Why `values` could not be built: (error class, message), for the dead letter.
    error: tuple[str, str] | None = None
    # The plan links each key's versions from the newest down: if the newest cannot be
    # built, the next-newest valid one is applied instead.
    older: RowVersion | None = None
    # Entity routing (cdc/core/entities.py): the item is, at this version, not (or no
    # longer) in this table. Deletes the row if there is one, and guards the key.
    moved: bool = False
    # Child tables' rows (qualified name → rows), built with `values`.
    children: dict[str, list[dict[str, Any]]] | None = None


ValuesOf = Callable[[dict[str, Any], str, TableOptions], dict[str, Any]]


TableT = TypeVar("TableT")


class TableSpec(Generic[TableT]):
    """One replica table: the table itself (for the SQL databases a SQLAlchemy `Table`:
    cdc/sql/replica.py), its key columns and options, and the conversion of a record
    into a `RowVersion` for it."""

    def __init__(
        self,
        source_table: str,
        table: TableT,
        qualified_name: str,
        column_names: Sequence[str],
        keys: tuple[KeyColumn, ...],
        options: TableOptions,
        values_of: ValuesOf,
    ) -> None:
        self.source_table = source_table
        self.table = table
        self.qualified_name = qualified_name
        self.keys = keys
        self.options = options
        self._values_of = values_of
        self.key_names = tuple(k.column for k in keys)
        # Document mode knows each key attribute's DynamoDB type; typed mode only names.
        self._key_types = {k.attribute: k.tag for k in keys}
        self._document_keys = all(k.tag is not None for k in keys)
        self.value_names = tuple(
            name
            for name in column_names
            if name not in self.key_names and name not in BOOKKEEPING_COLUMNS
        )
        # drift = "add_columns": the columns learnt from the live table (cdc/sql/drift_columns.py)
        self.drift: DriftColumns | None = None
        # An entity table (cdc/core/entities.py): key columns parsed out of the source
        # key; its guard is shared with the source's other tables, so a key that is not
        # here is guarded by a tombstone.
        self.parse_key: Callable[[Change], tuple[Any, ...]] | None = None
        self.routed = False
        # Child tables of list attributes: their rows, built with the values.
        self.children: Sequence[ChildSpec[Any]] = ()

    def key_of(self, change: Change) -> tuple[Any, ...]:
        if self.parse_key is not None:
            return self.parse_key(change)
        actual = change.key_types
        expected = self._key_types
        if (actual != expected) if self._document_keys else (actual.keys() != expected.keys()):
            raise RecordError(
                f"record keys {_describe(actual)} do not match the key of replica table "
                f"{self.qualified_name!r}: {_describe(expected)}",
                kind="key_mismatch",
            )
        values = []
        for key in self.keys:
            if self._document_keys:
                value = change.key_values[key.attribute]  # decoded once, in parse_record
            else:
                value = key.convert(change.keys[key.attribute], f"Keys.{key.attribute}")
            if value is None:
                raise RecordError(f"key attribute {key.attribute!r} is NULL", kind="key_mismatch")
            if isinstance(value, str) and "\x00" in value:
                # Never stripped or replaced: that could merge two distinct keys.
                raise RecordError(
                    f"key attribute {key.attribute!r} contains U+0000, which the database "
                    "cannot store in a key",
                    kind="nul",
                )
            values.append(value)
        return tuple(values)

    def values_of(self, image: dict[str, Any], where: str) -> dict[str, Any]:
        return self._values_of(image, where, self.options)

    def row_version(self, change: Change, lazy: bool = False) -> RowVersion | None:
        """The record as a row version, or None when the table ignores it (TTL).

        Lazy, its values are built later by `materialize`; the checks that need no
        image (key, missing NewImage) are made here either way."""
        key = self.key_of(change)
        if change.is_remove:
            if change.is_ttl_expiry and self.options.ttl_deletes == "ignore":
                return None
            image, where, deleted = change.old_image, "OldImage", True
        elif change.new_image is None:
            raise missing_new_image(change)
        else:
            image, where, deleted = change.new_image, "NewImage", False
        if lazy:
            return RowVersion(
                key, change.sequence, deleted, None, change.event_time, change, image, where
            )
        values = None if image is None else self.values_of(image, where)
        version = RowVersion(key, change.sequence, deleted, values, change.event_time, change)
        if self.children and image is not None and not deleted:
            version.children = self.children_of(image, where)
        return version

    def children_of(self, image: dict[str, Any], where: str) -> dict[str, list[dict[str, Any]]]:
        if self.options.personal is not None:
            image = self.options.personal.apply(image, where)
        nul = self.options.nul
        return {child.qualified_name: child.rows(image, where, nul) for child in self.children}

    def materialize(self, row: RowVersion) -> bool:
        """Build a lazy version's values; False (and `row.error` set) if they cannot be."""
        if row.image is None:
            return row.error is None
        try:
            row.values = self.values_of(row.image, row.where)
            if self.children and not row.deleted:
                row.children = self.children_of(row.image, row.where)
        except RecordError as exc:
            row.error = (exc.kind, str(exc))
        except Exception as exc:  # a bug of ours: keep the record, do not stall the shard
            log.exception("unexpected error building the values of record %d", row.change.index)
            row.error = ("internal", f"{type(exc).__name__}: {exc}")
        row.image = None
        return row.error is None


class ChildSpec(Generic[TableT]):
    """A child table of a list attribute (README: "Single-table designs"): one row per
    element, keyed by the parent's key columns and `position`, replaced as a whole with
    each version of the parent that wins the parent's guard."""

    def __init__(
        self,
        attribute: str,
        table: TableT,
        qualified_name: str,
        parent_keys: Sequence[str],
        position: str,
        columns: Sequence[tuple[ColumnConfig, Converter]],
    ) -> None:
        self.attribute = attribute
        self.table = table
        self.qualified_name = qualified_name
        self.parent_keys = tuple(parent_keys)
        self.position = position
        self.columns = tuple(columns)

    def rows(
        self, image: dict[str, Any], where: str, nul: NulPolicy = "reject"
    ) -> list[dict[str, Any]]:
        """The element rows (without the parent's key) of the list in `image`."""
        av = image.get(self.attribute)
        path = f"{where}.{self.attribute}"
        if av is None or av == {"NULL": True}:
            return []
        elements = av.get("L") if isinstance(av, dict) else None
        if not isinstance(elements, list):
            raise RecordError(
                f"{path} feeds child table {self.qualified_name!r} and must be a list (L), "
                f"got {next(iter(av), '?') if isinstance(av, dict) else av!r}",
                kind="conversion",
            )
        rows = []
        for position, element in enumerate(elements):
            fields = element.get("M") if isinstance(element, dict) else None
            if not isinstance(fields, dict):
                raise RecordError(
                    f"{path}[{position}] must be a map (M) to become a row of child table "
                    f"{self.qualified_name!r}",
                    kind="conversion",
                )
            row: dict[str, Any] = {self.position: position}
            for column, convert in self.columns:
                value = _lookup(fields, column.path)
                at = f"{path}[{position}].{column.attribute}"
                converted = None if value is None else convert(value, at)
                if converted is None and column.required:
                    raise ConversionError(
                        f"column {column.column!r} of child table {self.qualified_name!r} "
                        f"requires attribute {column.attribute!r}, which is missing or NULL"
                    )
                row[column.column] = _fix_nul(converted, at, nul)
            rows.append(row)
        return rows


def missing_new_image(change: Change) -> RecordError:
    return RecordError(
        f"{change.event_name} record has no NewImage (the stream's view type is "
        f"KEYS_ONLY or OLD_IMAGE); set hydrate = true for table {change.source_table!r} "
        "or switch the stream to NEW_IMAGE or NEW_AND_OLD_IMAGES",
        kind="missing_image",
    )


def _describe(keys: Mapping[str, str | None]) -> str:
    parts = (f"{name} {tag}" if tag else name for name, tag in sorted(keys.items()))
    return "(" + ", ".join(parts) + ")"


def key_hash(key: Sequence[Any]) -> tuple[str, str]:
    """(sha256, JSON) of a key, the same for equal keys whatever their spelling
    (`1.0` and `1` are one DynamoDB number): identifies a tombstone."""
    canonical = [
        canonical_number(v) if isinstance(v, Decimal | int) and not isinstance(v, bool) else v
        for v in key
    ]
    text = dumps(canonical)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), text


# --- U+0000 -----------------------------------------------------------------------------


def _nul_fix(policy: NulPolicy) -> Callable[[str], str]:
    return (
        (lambda s: s.replace("\x00", ""))
        if policy == "strip"
        else (lambda s: s.replace("\x00", NUL_REPLACEMENT))
    )


def apply_nul_policy(plain: Any, path: str, policy: NulPolicy) -> Any:
    """Postgres cannot store U+0000 in text or jsonb; the table's `nul` option decides."""
    if policy != "reject":
        return map_strings(plain, _nul_fix(policy))
    found = find_nul(plain, path)
    raise RecordError(
        f'{found} contains U+0000, which PostgreSQL cannot store; set nul = "strip" or '
        '"replace" for this table to accept it',
        kind="nul",
    )


def _plain_json(plain: Any, where: str, policy: NulPolicy) -> str:
    try:
        text = dumps(plain)
    except TypeError as exc:  # a lone surrogate the decoder did not see (defence in depth)
        raise RecordError(f"{where} cannot be encoded as JSON: {exc}", kind="decode") from None
    if "\\u0000" in text and find_nul(plain, where) is not None:
        text = dumps(apply_nul_policy(plain, where, policy))
    return text


# --- document mode ------------------------------------------------------------------------


def document_values(image: dict[str, Any], where: str, options: TableOptions) -> dict[str, Any]:
    if options.personal is not None:
        image = options.personal.apply(image, where)
    text = image_to_json(image, where)
    if "\\u0000" in text:  # maybe a U+0000 to strip, replace or reject: the slow way
        text = _plain_json(image_to_plain(image, where), where, options.nul)
    return {ITEM: text}


# --- typed mode ---------------------------------------------------------------------------


def _lookup(image: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The AttributeValue at `path` (`Address.City` → image["Address"]["M"]["City"])."""
    current: Any = image.get(path[0])
    for part in path[1:]:
        if not isinstance(current, dict) or not isinstance(current.get("M"), dict):
            return None
        current = current["M"].get(part)
    return current


def typed_values_factory(config: TableConfig, drift: DriftColumns | None = None) -> ValuesOf:
    keys = set(config.keys)
    columns = [
        (c, converter(c.column, c.type, c.time_format))
        for c in config.columns
        if c.attribute not in keys
    ]
    direct = {c.path[0] for c in config.columns if len(c.path) == 1} | set(config.omit)
    keep_extra = config.unmapped == "extra"

    def values_of(image: dict[str, Any], where: str, options: TableOptions) -> dict[str, Any]:
        if options.personal is not None:
            image = options.personal.apply(image, where)
        plain = image_to_plain(image, where)  # validates every attribute, used or not
        values: dict[str, Any] = {}
        for column, convert in columns:
            av = _lookup(image, column.path)
            path = f"{where}.{column.attribute}"
            value = None if av is None else convert(av, path)
            if value is None and column.required:
                raise ConversionError(
                    f"column {column.column!r} requires attribute {column.attribute!r}, "
                    "which is missing or NULL"
                )
            values[column.column] = _fix_nul(value, path, options.nul)
        if keep_extra:
            rest = {name: value for name, value in plain.items() if name not in direct}
            if drift is not None:
                _drift_values(drift, image, rest, values, where, options.nul)
            values[EXTRA] = _plain_json(rest, where, options.nul) if rest else None
        return values

    return values_of


def _drift_values(
    drift: DriftColumns,
    image: dict[str, Any],
    rest: dict[str, Any],
    values: dict[str, Any],
    where: str,
    policy: NulPolicy,
) -> None:
    """Move the attributes that have a drift column from `rest` (the future `extra`)
    into their columns; a value the column cannot hold, or NULL, stays in `extra`."""
    known = drift.by_attribute
    for column, _ in known.values():
        values[column.column] = None
    for name in [n for n in rest if n in known]:
        column, convert = known[name]
        path = f"{where}.{name}"
        try:
            value = convert(image[name], path)
            if value is None:
                continue
            value = _fix_nul(value, path, policy)
        except RecordError:
            continue
        values[column.column] = value
        del rest[name]


def _fix_nul(value: Any, path: str, policy: NulPolicy) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            return apply_nul_policy(value, path, policy)
        if "\\u0000" in value and value[:1] in '[{"':  # a JSON column's text
            from cdc.core.jsontext import loads

            return _plain_json(loads(value), path, policy)
    elif isinstance(value, list) and any(isinstance(v, str) and "\x00" in v for v in value):
        return apply_nul_policy(value, path, policy)
    return value


def config_where(config: TableConfig) -> str:
    return f"[tables.{config.source}]"
