"""What has accumulated in a replica's JSON columns, read back as items: a document
table's `item`, a typed table's `extra` (for `cdc infer-mapping --from-replica` and
the new columns of `drift = "add_columns"`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, MetaData, Table, Text, cast, false, inspect, select

from cdc.config import Settings
from cdc.core.errors import CdcError
from cdc.core.jsontext import loads
from cdc.core.mapping import DELETED, EXTRA, ITEM, TableConfig
from cdc.core.naming import fit, snake
from cdc.sql.backends.registry import backend_for

_TAGS = {"text": "S", "bytea": "B", "date": "S", "timestamptz": "S"}


@dataclass
class ReplicaSample:
    table: str  # the replica table, qualified
    keys: list[tuple[str, str]]  # (attribute, S | N | B)
    items: list[dict[str, Any]]  # plain JSON: the item, or a typed row's `extra`
    declared: dict[str, str] = field(default_factory=dict)  # typed: attribute → type


def replica_table(engine: Engine, settings: Settings, source: str) -> Table:
    """The replica table of `source`, reflected; CdcError when there is none."""
    config = settings.tables.get(source)
    dialect = backend_for(engine.dialect.name)
    configured = config.table if config is not None else None
    name = fit(configured or snake(source), dialect.max_identifier_bytes, source)
    schema = (config.schema if config is not None else None) or settings.schema
    if not inspect(engine).has_table(name, schema=schema):
        where = f"{schema}.{name}" if schema else name
        raise CdcError(f"there is no replica table {where} of {source!r} in the database")
    return Table(name, MetaData(), autoload_with=engine, schema=schema)


def read_sample(
    engine: Engine, settings: Settings, source: str, limit: int | None
) -> ReplicaSample:
    """Up to `limit` live rows of `source`'s replica as plain items (every row: None)."""
    table = replica_table(engine, settings, source)
    config = settings.tables.get(source)
    typed = config is not None and config.typed
    column = EXTRA if typed else ITEM
    if column not in table.c:
        raise CdcError(f"replica table {table.fullname} has no {column!r} column to read")
    items = list(_rows(engine, table, column, limit))
    if typed:
        assert config is not None
        return ReplicaSample(table.fullname, _typed_keys(config), items, _declared(config))
    return ReplicaSample(table.fullname, _document_keys(table, items), items)


def _rows(engine: Engine, table: Table, column: str, limit: int | None) -> Iterator[dict[str, Any]]:
    query = select(cast(table.c[column], Text)).where(table.c[DELETED] == false())
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        for (text,) in conn.execute(query):
            value = loads(text) if text else {}
            yield value if isinstance(value, dict) else {}


def _typed_keys(config: TableConfig) -> list[tuple[str, str]]:
    kinds = {c.attribute: c.type.kind for c in config.columns}
    return [(k, _TAGS.get(kinds[k], "N")) for k in config.keys]


def _declared(config: TableConfig) -> dict[str, str]:
    return {c.attribute: str(c.type) for c in config.columns}


def _document_keys(table: Table, items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The key attributes of a document table: its primary key columns, named back to
    the attributes of the items (`customer_id` ← `CustomerId`)."""
    keys = []
    for column in table.primary_key.columns:
        attribute, tag = column.name, "S"
        for item in items:
            found = next((a for a in item if fit(snake(a), 10**6, a) == column.name), None)
            if found is not None:
                attribute = found
                value = item[found]
                tag = "N" if isinstance(value, Decimal | int) else "S"
                break
        keys.append((attribute, tag))
    return keys
