"""Run the alembic migrations (bookkeeping tables, configured tables).

alembic is imported here, not at module import of the handler: a warm container never
pays for it, and a cold one only when the bookkeeping tables are missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect

from cdc.schema import BOOKKEEPING_TABLES


def migrations_dir() -> Path:
    """`cdc/migrations` in a wheel or Lambda zip; `migrations/` in a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the cdc migrations directory is missing from this installation")


def alembic_config(engine: Engine | None = None, schema: str | None = None, **attributes: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["engine"] = engine
    config.attributes["schema"] = schema
    config.attributes.update(attributes)
    return config


def upgrade(engine: Engine, schema: str | None = None, revision: str = "head", sql: bool = False) -> None:
    from alembic import command

    command.upgrade(alembic_config(engine, schema), revision, sql=sql)


def ensure_bookkeeping(engine: Engine, schema: str | None) -> None:
    """Run the migrations when a bookkeeping table is missing (first run on a new
    database); otherwise one catalog query and nothing else."""
    existing = set(inspect(engine).get_table_names(schema=schema))
    if not set(BOOKKEEPING_TABLES) <= existing:
        upgrade(engine, schema)
