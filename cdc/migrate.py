"""Run the alembic migrations (bookkeeping tables, configured tables).

alembic is imported here, not at module import of the handler: a warm container never
pays for it, and a cold one only when the bookkeeping tables are missing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, MetaData, inspect

from cdc.schema import BOOKKEEPING_TABLES

if TYPE_CHECKING:
    from cdc.config import Settings


# alembic keeps its `context` and `op` as process-wide globals: two threads running
# migrations at once (several replicators meeting a new database) would tear each
# other's down. The database-side advisory lock (migrations/env.py) orders processes.
_ALEMBIC = threading.RLock()


def migrations_dir() -> Path:
    """`cdc/migrations` in a wheel or Lambda zip; `migrations/` in a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the cdc migrations directory is missing from this installation")


def alembic_config(engine: Engine | None = None, settings: Settings | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["engine"] = engine
    config.attributes["settings"] = settings
    return config


def upgrade(engine: Engine, settings: Settings, revision: str = "head", sql: bool = False) -> None:
    """alembic upgrade, then create the mapping's tables that no revision created yet
    and warn when the database differs from the mapping (see migrations/env.py)."""
    from alembic import command

    config = alembic_config(engine, settings)
    config.attributes["create_configured_tables"] = True
    with _ALEMBIC:
        command.upgrade(config, revision, sql=sql)


def ensure_bookkeeping(
    engine: Engine, schema: str | None, settings: Settings | None = None
) -> None:
    """Run the migrations when a bookkeeping table is missing (first run on a new
    database); otherwise one catalog query and nothing else."""
    if _bookkeeping_exists(engine, schema):
        return
    if settings is None:
        from cdc.config import Settings

        settings = Settings(database_url=engine.url, schema=schema)
    with _ALEMBIC:  # another thread may have just done it
        if not _bookkeeping_exists(engine, schema):
            upgrade(engine, settings)


def _bookkeeping_exists(engine: Engine, schema: str | None) -> bool:
    return set(BOOKKEEPING_TABLES) <= set(inspect(engine).get_table_names(schema=schema))


def target_metadata(settings: Settings, dialect_name: str) -> MetaData:
    """What the database should contain: the bookkeeping tables and every typed table
    of the mapping, as built for `dialect_name`. alembic autogenerate diffs against it."""
    from cdc.bookkeeping import tables
    from cdc.dialects import dialect_for
    from cdc.mapping import typed_spec

    dialect = dialect_for(dialect_name)
    metadata = MetaData()
    for table in tables(settings.schema).values():
        table.to_metadata(metadata)
    for config in settings.tables.values():
        if config.typed:
            typed_spec(
                config,
                metadata,
                settings.schema,
                dialect.max_identifier_bytes,
                dialect.column_type,
                dialect.table_options(),
            )
    return metadata
