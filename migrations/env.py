"""alembic environment for cdc.

Target metadata = the bookkeeping tables. The engine comes from `cdc migrate` (through
`config.attributes`) or, when alembic is run by hand from a checkout, from the same
settings the service reads (`CDC_DATABASE_URL`, `CDC_SCHEMA`, `CDC_CONFIG`).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.schema import CreateSchema

from cdc import schema as bookkeeping

config = context.config
target_metadata = bookkeeping.metadata

# Serialises concurrent first runs (ten Lambda containers starting at once).
LOCK_ID = 0x6364_6301  # "cdc\x01"


def _settings() -> tuple[Any, str | None]:
    engine = config.attributes.get("engine")
    schema = config.attributes.get("schema")
    if engine is None:
        from cdc.config import load_settings
        from cdc.db import make_engine

        settings = load_settings(default_url="sqlite:///cdc.db")
        assert settings.database_url is not None
        engine = make_engine(settings.database_url)
        schema = settings.schema
    return engine, schema


def _configure(connection: Connection | None, schema: str | None, **kwargs: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=False,
        render_as_batch=connection is not None and connection.dialect.name == "sqlite",
        user_module_prefix="cdc.types.",
        **kwargs,
    )


def run_offline() -> None:
    engine, schema = _settings()
    _configure(None, schema, url=engine.url, literal_binds=True, dialect_name=engine.dialect.name)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine, schema = _settings()
    with engine.connect() as connection:
        name = connection.dialect.name
        if schema is not None and name == "postgresql":
            connection.execute(CreateSchema(schema, if_not_exists=True))
        if name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
        elif name in ("mysql", "mariadb"):
            connection.execute(text("SELECT GET_LOCK('cdc_migrate', 60)"))
        connection.commit()
        try:
            translated = connection.execution_options(schema_translate_map={None: schema}) if schema else connection
            _configure(translated, schema)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
            elif name in ("mysql", "mariadb"):
                connection.execute(text("SELECT RELEASE_LOCK('cdc_migrate')"))
            connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
