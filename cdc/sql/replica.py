"""Replica table specs bound to SQLAlchemy tables: the document layout (DocumentTables),
the bookkeeping columns every replica table carries, and typed tables from the mapping file."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeAlias

from sqlalchemy import Boolean, Column, ColumnElement, Integer, MetaData, Table, tuple_
from sqlalchemy.types import TypeEngine

from cdc.core.change import Change
from cdc.core.convert import ColumnType, converter
from cdc.core.decode import to_python
from cdc.core.drift_columns import DriftColumns
from cdc.core.entities import POSITION, ChildConfig, EntityConfig, key_parser
from cdc.core.errors import ConfigError, NameCollision, RecordError
from cdc.core.mapping import (
    APPLIED_AT,
    BOOKKEEPING_COLUMNS,
    DELETED,
    EVENT_TIME,
    EXTRA,
    ITEM,
    SEQ,
    ChildSpec,
    ColumnConfig,
    KeyColumn,
    TableConfig,
    TableOptions,
    TableSpec,
    ValuesOf,
    config_where,
    document_values,
    is_reserved_table,
    typed_values_factory,
)
from cdc.core.naming import NameTable, fit, snake
from cdc.sql.types import JsonDocument, SequenceNumber, UtcDateTime

ReplicaSpec: TypeAlias = TableSpec[Table]


class TableFacts(Protocol):
    """What a database tells the replica tables built for it (a backend, cdc/sql/backends)."""

    @property
    def max_identifier_bytes(self) -> int: ...

    def column_type(self, ctype: ColumnType, key: bool) -> TypeEngine[Any]: ...

    def table_options(self) -> dict[str, str]: ...


def replica_spec(
    source: str,
    table: Table,
    keys: tuple[KeyColumn, ...],
    options: TableOptions,
    values_of: ValuesOf,
) -> ReplicaSpec:
    """The spec of a replica table in a SQL database."""
    return TableSpec(
        source, table, table.fullname, [c.name for c in table.columns], keys, options, values_of
    )


@dataclass
class DocumentTables:
    """Builds document-mode `TableSpec`s on first sight of a source table."""

    metadata: MetaData
    schema: str | None
    max_identifier_bytes: int
    key_type: Callable[[str], TypeEngine[Any]]
    options_for: Callable[[str], TableOptions]
    table_options: Mapping[str, str] = field(default_factory=dict)
    table_names: NameTable = field(default_factory=lambda: NameTable("source tables"))
    names_for: Callable[[str], tuple[str | None, str | None]] = lambda source: (None, None)

    def spec_for(self, change: Change) -> ReplicaSpec:
        source = change.source_table
        configured_name, configured_schema = self.names_for(source)
        name = configured_name or fit(snake(source), self.max_identifier_bytes, source)
        schema = configured_schema or self.schema
        try:
            self.table_names.claim(f"{schema}.{name}" if schema else name, source)
        except NameCollision as exc:
            raise RecordError(str(exc), kind="name_collision") from None
        columns = NameTable(
            f"attributes of table {source!r}",
            reserved={n: f"<cdc column {n}>" for n in (ITEM, *BOOKKEEPING_COLUMNS)},
        )
        options = self.options_for(source)
        personal = options.personal
        touched = (
            [r.attribute for r in personal.rules if r.path[0] in change.keys] if personal else []
        )
        if touched:
            raise RecordError(
                f"attribute(s) {', '.join(touched)} of table {source!r} are key attributes "
                "and cannot be excluded or hashed; change [tables."
                f"{source}.attributes] in the mapping",
                kind="config",
            )
        keys = []
        for attribute in sorted(change.keys):
            column = fit(snake(attribute), self.max_identifier_bytes, attribute)
            try:
                columns.claim(column, attribute)
            except NameCollision as exc:
                raise RecordError(str(exc), kind="name_collision") from None
            tag = next(iter(change.keys[attribute]))
            keys.append(KeyColumn(attribute, column, tag, to_python))
        table = Table(
            name,
            self.metadata,
            *(Column(k.column, self.key_type(k.tag or "S"), primary_key=True) for k in keys),
            Column(ITEM, JsonDocument()),
            *bookkeeping_columns(),
            schema=schema,
            extend_existing=True,
            comment=f"cdc replica of DynamoDB table {source}",
            **dict[str, Any](self.table_options),
        )
        return replica_spec(source, table, tuple(keys), options, document_values)


def bookkeeping_columns() -> list[Column[Any]]:
    return [
        Column(SEQ, SequenceNumber(), nullable=False),
        Column(DELETED, Boolean(), nullable=False),
        Column(EVENT_TIME, UtcDateTime()),
        Column(APPLIED_AT, UtcDateTime(), nullable=False),
    ]


def typed_spec(
    config: TableConfig,
    metadata: MetaData,
    default_schema: str | None,
    database: TableFacts,
) -> ReplicaSpec:
    """The replica table of a typed mapping, as `database` makes its tables. Raises
    ConfigError on name collisions."""
    max_identifier_bytes = database.max_identifier_bytes
    column_type = database.column_type
    source = config.source
    name = fit(config.table or snake(source), max_identifier_bytes, source)
    if is_reserved_table(name):
        raise ConfigError(
            f"{config_where(config)}: the replica table {name!r} would take a name cdc "
            "reserves for its bookkeeping tables (cdc_*, alembic_version); set `table`"
        )
    reserved = {n: f"<cdc column {n}>" for n in BOOKKEEPING_COLUMNS}
    if config.unmapped == "extra":
        reserved[EXTRA] = "<cdc column extra>"
    names = NameTable(f"columns of table {source!r}: attributes", reserved=reserved)
    resolved: dict[str, ColumnConfig] = {}
    for column in config.columns:
        identifier = fit(column.column, max_identifier_bytes, column.attribute)
        try:
            names.claim(identifier, column.attribute)
        except NameCollision as exc:
            raise ConfigError(f"{config_where(config)}: {exc}") from None
        resolved[column.attribute] = ColumnConfig(
            column.attribute, identifier, column.type, column.required, column.time_format
        )
    key_columns = []
    sql_columns: list[Column[Any]] = []
    for attribute in config.keys:
        column = resolved[attribute]
        key_columns.append(
            KeyColumn(
                attribute,
                column.column,
                None,
                converter(column.column, column.type, column.time_format),
            )
        )
        # Never AUTO_INCREMENT (MySQL would turn a key 0 into the next counter value)
        # nor SERIAL: key values come from the items.
        sql_columns.append(
            Column(
                column.column,
                column_type(column.type, True),
                primary_key=True,
                autoincrement=False,
            )
        )
    for attribute, column in resolved.items():
        if attribute in config.keys:
            continue
        sql_columns.append(
            Column(column.column, column_type(column.type, False), nullable=not column.required)
        )
    if config.unmapped == "extra":
        sql_columns.append(Column(EXTRA, JsonDocument()))
    table = Table(
        name,
        metadata,
        *sql_columns,
        *bookkeeping_columns(),
        schema=config.schema or default_schema,
        extend_existing=True,
        comment=f"cdc replica of DynamoDB table {source}",
        **dict[str, Any](database.table_options()),
    )
    effective = replace(
        config, table=name, columns=tuple(resolved[c.attribute] for c in config.columns)
    )
    drift = DriftColumns() if config.options.drift == "add_columns" else None
    spec = replica_spec(
        source, table, tuple(key_columns), config.options, typed_values_factory(effective, drift)
    )
    spec.drift = drift
    return spec


def entity_specs(
    config: TableConfig,
    metadata: MetaData,
    default_schema: str | None,
    database: TableFacts,
) -> list[ReplicaSpec]:
    """The replica tables of a source table's entities (README: "Single-table designs"),
    each a typed table whose key columns are parsed out of the source key, with its
    child tables. Raises ConfigError on name collisions."""
    specs = []
    for entity in config.entities:
        entity_config: EntityConfig = entity
        where = f"[tables.{config.source}.entities.{entity_config.name}]"
        # Key columns are named groups, not attributes: "#group" cannot name an attribute
        # of the image by accident.
        keys = tuple(f"#{g.name}" for g in entity_config.groups)
        synthesized = TableConfig(
            source=config.source,
            options=config.options,
            table=entity_config.table,
            schema=entity_config.schema or config.schema,
            keys=keys,
            columns=(
                *(ColumnConfig(f"#{g.name}", g.name, g.type, True) for g in entity_config.groups),
                *entity_config.columns,
            ),
            unmapped=entity_config.unmapped,
            omit=(
                *(attribute for attribute, _ in entity_config.patterns),
                *(c.attribute for c in entity_config.children),
            ),
        )
        spec = typed_spec(synthesized, metadata, default_schema, database)
        spec.parse_key = key_parser(entity_config, where)
        spec.routed = True
        spec.children = [
            _child_spec(
                child,
                spec,
                metadata,
                child.schema or spec.table.schema,
                database,
            )
            for child in entity_config.children
        ]
        specs.append(spec)
    return specs


def _child_spec(
    child: ChildConfig,
    parent: ReplicaSpec,
    metadata: MetaData,
    schema: str | None,
    database: TableFacts,
) -> ChildSpec[Table]:
    max_identifier_bytes = database.max_identifier_bytes
    name = fit(child.table, max_identifier_bytes, child.attribute)
    columns: list[tuple[ColumnConfig, Any]] = []
    for column in child.columns:
        identifier = fit(column.column, max_identifier_bytes, column.attribute)
        fitted = ColumnConfig(
            column.attribute, identifier, column.type, column.required, column.time_format
        )
        columns.append((fitted, converter(identifier, column.type, column.time_format)))
    parent_table = parent.table
    table = Table(
        name,
        metadata,
        *(
            Column(
                key,
                parent_table.c[key].type,
                primary_key=True,
                autoincrement=False,
            )
            for key in parent.key_names
        ),
        Column(POSITION, Integer(), primary_key=True, autoincrement=False),
        *(
            Column(c.column, database.column_type(c.type, False), nullable=not c.required)
            for c, _ in columns
        ),
        schema=schema,
        extend_existing=True,
        comment=f"cdc replica of DynamoDB table {parent.source_table}",
        **dict[str, Any](database.table_options()),
    )
    return ChildSpec(child.attribute, table, table.fullname, parent.key_names, POSITION, columns)


def keys_in(
    columns: Sequence[ColumnElement[Any]], keys: Sequence[Sequence[Any]]
) -> ColumnElement[bool]:
    """The rows whose key `columns` hold one of `keys` (an IN list; a row-value IN list
    for a composite key)."""
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    return tuple_(*columns).in_([tuple(k) for k in keys])
