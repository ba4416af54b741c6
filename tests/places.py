"""Where a test's replica lives: each database of CDC_TEST_DATABASES (a fresh schema, or
MySQL database, of the test's own) and SQLite (a file in the test's directory).

Import `place_fixture` (the fixture `place`) into a test module to run its tests once
per database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, inspect, select, text
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc.config import parse_database_url
from cdc.sql.backends.registry import backend_class
from cdc.sql.engines import make_engine
from tests.databases import DATABASES, server_engine


@dataclass
class Place:
    name: str  # postgresql | mysql | sqlite
    engine: Engine
    schema: str | None
    url: str

    def env(self, config: Path | None = None, **extra: str) -> dict[str, str]:
        env = {"CDC_DATABASE_URL": self.url, **extra}
        if config is not None:
            env["CDC_CONFIG"] = str(config)
        if self.schema is not None:
            env["CDC_SCHEMA"] = self.schema
        return env

    def qualified(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else name

    def tables(self) -> set[str]:
        return set(inspect(self.engine).get_table_names(schema=self.schema))

    def columns(self, table: str) -> dict[str, str]:
        """Column name → its type's DDL, as the database has it."""
        return {
            c["name"]: c["type"].compile(dialect=self.engine.dialect)
            for c in inspect(self.engine).get_columns(table, schema=self.schema)
        }

    def reflect(self, name: str) -> Table:
        return Table(name, MetaData(), autoload_with=self.engine, schema=self.schema)

    def rows(self, name: str) -> list[dict[str, Any]]:
        table = self.reflect(name)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(table)).mappings()]

    def execute(self, sql: str) -> None:
        """DDL written by the test (`{t}` is the schema-qualified prefix)."""
        prefix = ""
        if self.schema is not None:
            quote = '"' if self.name == "postgresql" else "`"
            prefix = f"{quote}{self.schema}{quote}."
        with self.engine.begin() as conn:
            conn.execute(text(sql.format(t=prefix)))

    def revisions(self) -> set[str]:
        table = self.reflect("alembic_version")
        with self.engine.connect() as conn:
            return set(conn.execute(select(table.c.version_num)).scalars())


def _fresh(engine: Engine) -> str:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(CreateSchema(schema))
    return schema


@pytest.fixture(name="place", params=DATABASES)
def place_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    name = request.param
    if not backend_class(name).network:  # embedded: a file of the test's own
        url = f"{name}:///{tmp_path}/replica.db"
        engine = make_engine(parse_database_url(url, "test"))
        yield Place(name, engine, None, url)
        engine.dispose()
        return
    engine = server_engine(request, name)
    schema = _fresh(engine)
    yield Place(name, engine, schema, engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        conn.execute(DropSchema(schema, cascade=engine.dialect.name == "postgresql"))
