"""alembic environment for cdc.

Target metadata = the bookkeeping tables + the typed tables of the mapping file
(CDC_CONFIG), so autogenerate (`cdc revision`) writes a migration when the mapping
changes, into the user's directory (cdc/sql/migrations.py, README: Migrations). The engine and
settings come from the `cdc` commands (through `config.attributes`) or, when alembic
runs by hand from a checkout, from the same settings the service reads
(CDC_DATABASE_URL, CDC_SCHEMA, CDC_CONFIG).
"""

from __future__ import annotations

import logging
from typing import Any

from alembic import context
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeDecorator

from cdc.sql.backends.registry import backend_class
from cdc.sql.drift import describe_differences
from cdc.sql.migrations import target_metadata

log = logging.getLogger("cdc.migrate")
config = context.config


def _engine_and_settings() -> tuple[Any, Any]:
    from cdc.config import load_settings

    engine = config.attributes.get("engine")
    settings = config.attributes.get("settings")
    if settings is None:
        settings = load_settings(default_url="sqlite:///cdc.db")
    if engine is None:
        from cdc.sql.engines import make_engine

        engine = make_engine(settings.database_url)
    return engine, settings


def _compare_type(
    context: Any, inspected: Any, metadata_column: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """Our TypeDecorators (exact numbers, JSON as text) render per-dialect DDL: compare
    what they render, not their Python impl, or every run would see a change."""
    if not isinstance(metadata_type, TypeDecorator):
        return None
    dialect = context.dialect
    expected = metadata_type.compile(dialect=dialect)
    actual = inspected_type.compile(dialect=dialect)
    norm = backend_class(dialect.name).normalize_ddl
    return norm(expected, dialect) != norm(actual, dialect)


def _configure(connection: Connection | None, settings: Any, metadata: Any, **kwargs: Any) -> None:
    schema = settings.schema
    wanted = {schema} | {c.schema for c in settings.tables.values() if c.schema}

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return name in wanted if type_ == "schema" else True

    mapping_only = bool(config.attributes.get("mapping_only"))

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        # Document-mode tables appear at run time and are no business of the mapping's
        # migrations: never propose dropping a table we did not declare.
        if type_ == "table" and reflected and compare_to is None:
            return False
        # The user's revisions (`cdc revision`) never touch cdc's bookkeeping tables:
        # cdc's own revisions manage those.
        return not (mapping_only and type_ == "table" and _is_bookkeeping(str(name)))

    if mapping_only:  # `cdc revision`: drift columns as `add_drift_column`
        from cdc.sql.drift_revisions import drift_directives

        kwargs.setdefault("process_revision_directives", drift_directives)
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        include_schemas=schema is not None or len(wanted) > 1,
        include_name=include_name,
        include_object=include_object,
        compare_type=_compare_type,
        render_as_batch=(
            connection is not None and backend_class(connection.dialect.name).alters_in_batches
        ),
        user_module_prefix="cdc.types.",
        **kwargs,
    )


def run_offline() -> None:
    engine, settings = _engine_and_settings()
    metadata = target_metadata(settings, engine.dialect.name)
    _configure(
        None,
        settings,
        metadata,
        url=engine.url,
        literal_binds=True,
        dialect_name=engine.dialect.name,
    )
    with context.begin_transaction():
        context.run_migrations()
        if config.attributes.get("create_configured_tables"):
            # What `cdc migrate` would create online: the mapping's tables no revision
            # created yet. IF NOT EXISTS, since the SQL may run against either state.
            for table in _configured(metadata):
                context.execute(CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    context.execute(CreateIndex(index, if_not_exists=True))


def run_online() -> None:
    engine, settings = _engine_and_settings()
    schema = settings.schema
    with engine.connect() as connection:
        name = connection.dialect.name
        backend = backend_class(name)
        # Serialises concurrent first runs (ten Lambda containers starting at once).
        backend.lock_migrations(connection)
        if schema is not None:
            backend.create_schema_for_migrations(connection, schema)
        connection.commit()
        try:
            metadata = target_metadata(
                settings,
                name,
                connection,
                discover=bool(config.attributes.get("mapping_only")),  # `cdc revision`
            )
            _configure(connection, settings, metadata)
            with context.begin_transaction():
                context.run_migrations()
            if config.attributes.get("create_configured_tables"):  # `cdc migrate`, not autogenerate
                if any(c.options.drift != "off" for c in settings.tables.values()):
                    metadata = target_metadata(settings, name, connection)  # columns made now
                _create_and_check(connection, settings, metadata)
            connection.commit()
        finally:
            connection.rollback()  # after a failure: the unlock must not run in it
            backend.unlock_migrations(connection)
            connection.commit()


def _is_bookkeeping(name: str) -> bool:
    return name.startswith(("cdc_", "alembic_"))


def _configured(metadata: Any) -> list[Any]:
    """The mapping's tables in the target metadata (the rest are bookkeeping)."""
    return [t for t in metadata.sorted_tables if not _is_bookkeeping(t.name)]


def _create_and_check(connection: Connection, settings: Any, metadata: Any) -> None:
    """Create configured tables that no revision created yet, then record how the
    database still differs from the mapping (a changed column needs a revision) in
    `config.attributes["differences"]`, one readable line each: `cdc migrate` prints
    them and fails until they are gone."""
    typed = _configured(metadata)
    for table in typed:
        table.create(connection, checkfirst=True)
    config.attributes["differences"] = []
    if not typed:
        return
    names = {t.name for t in typed}
    migration_context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": _compare_type,
            "include_schemas": True,
            "include_name": lambda name, type_, parents: (
                type_ != "schema" or name in {t.schema for t in typed}
            ),
            "include_object": lambda obj, name, type_, reflected, compare_to: (
                not (type_ == "table" and (compare_to is None or str(name) not in names))
            ),
        },
    )
    differences = describe_differences(
        compare_metadata(migration_context, metadata), connection.dialect
    )
    config.attributes["differences"] = differences
    if differences:
        log.info("the database differs from the mapping: %s", "; ".join(differences))


if context.is_offline_mode():
    run_offline()
else:
    run_online()
