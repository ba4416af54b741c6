"""The databases under test: one list, from cdc's backend registry, cut down by
CDC_TEST_DATABASES; one `Database` for each test that opens one (`open_database`).

A registered backend is tested as soon as it is registered: a server comes from
CDC_TEST_<NAME>_URL (PostgreSQL and MySQL also from Docker or, for PostgreSQL, a local
cluster: tests/conftest.py), an embedded database (no `network`) is a file of the
test's own. A listed database that cannot be reached fails the run, it is not skipped;
one left out is not collected.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, Text, cast, func, inspect, select
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc import handler as lambda_handler
from cdc.config import Settings, parse_database_url
from cdc.core.deadline import Deadline
from cdc.core.mapping import TableConfig
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from cdc.sql.backends.registry import backend_class, backends
from cdc.sql.engines import make_engine
from tests.factories import FakeContext

# Every registered backend, by its name; and every name users write for one.
REGISTERED = [cls.name for cls in backends()]
_ALIASES = {
    alias: cls.name for cls in backends() for alias in (cls.name, *cls.names, *cls.url_drivers)
}


def selected_databases(value: str | None) -> list[str]:
    """CDC_TEST_DATABASES as the backends it names (`mariadb` is `mysql`), in order;
    unset or empty: every registered backend."""
    names = [n.strip().lower() for n in (value or ",".join(REGISTERED)).split(",") if n.strip()]
    unknown = [n for n in names if n not in _ALIASES]
    if unknown or not names:
        raise pytest.UsageError(
            f"CDC_TEST_DATABASES={value!r}: expected a comma-separated list of "
            f"{', '.join(REGISTERED)} (or another name of one: {', '.join(sorted(_ALIASES))})"
        )
    return list(dict.fromkeys(_ALIASES[n] for n in names))


# Every test that runs on several databases takes its parameters from here, so
# CDC_TEST_DATABASES=postgresql collects no MySQL case (a machine without MySQL).
DATABASES = selected_databases(os.environ.get("CDC_TEST_DATABASES"))
# Those with schemas: each test gets a fresh one (the `db` fixture).
WITH_SCHEMAS = [n for n in DATABASES if backend_class(n).supports_schemas]


def servers(*among: str) -> list[str]:
    """The selected databases among `among`: for tests written for only some of them."""
    return [name for name in DATABASES if name in among]


def server_url(name: str) -> str | None:
    """CDC_TEST_<NAME>_URL (PostgreSQL's is also CDC_TEST_DATABASE_URL)."""
    return os.environ.get(f"CDC_TEST_{name.upper()}_URL")


class Database:
    """One database under test: its engine, a fresh schema (or file), cdc's replicator
    and Lambda handler pointed at it, and readers that see the replica the same way on
    every backend."""

    __test__ = False  # not a test class

    def __init__(self, name: str, engine: Engine, schema: str | None) -> None:
        self.name = name
        self.engine = engine
        self.schema = schema
        self.settings = Settings(database_url=engine.url, schema=schema)
        self.backend = backend_class(name)

    @property
    def url(self) -> str:
        """The URL, password included: for CDC_DATABASE_URL."""
        return self.engine.url.render_as_string(hide_password=False)

    def settings_with(self, **tables: Any) -> Settings:
        configs = {
            source: value if isinstance(value, TableConfig) else TableConfig(source, options=value)
            for source, value in tables.items()
        }
        return Settings(database_url=self.engine.url, schema=self.schema, tables=configs)

    def replicator(self, settings: Settings | None = None) -> Replicator:
        return Replicator(self.engine, settings or self.settings)

    def process(self, records: list[Any], settings: Settings | None = None) -> Any:
        deadline = Deadline.from_context(FakeContext(30_000))
        return self.replicator(settings).process(records, deadline)

    def handle(self, monkeypatch: pytest.MonkeyPatch, records: list[Any]) -> Any:
        """The Lambda handler's response to an event of `records`."""
        monkeypatch.setenv("CDC_DATABASE_URL", self.engine.url.render_as_string(False))
        if self.schema is None:
            monkeypatch.delenv("CDC_SCHEMA", raising=False)
        else:
            monkeypatch.setenv("CDC_SCHEMA", self.schema)
        monkeypatch.delenv("CDC_CONFIG", raising=False)
        lambda_handler.reset()
        try:
            return lambda_handler.handler({"Records": records}, FakeContext(30_000))
        finally:
            lambda_handler.reset()

    def table(self, name: str) -> Table:
        return Table(name, MetaData(), autoload_with=self.engine, schema=self.schema)

    def rows(self, name: str) -> list[dict[str, Any]]:
        """Every row of a replica table, JSON columns as text (exact numbers)."""
        from sqlalchemy.dialects.postgresql import JSON, JSONB
        from sqlalchemy.types import JSON as GenericJSON

        table = self.table(name)
        columns = [
            cast(c, Text).label(c.name) if isinstance(c.type, JSON | JSONB | GenericJSON) else c
            for c in table.columns
        ]
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(*columns))]

    def count(self, name: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(self.table(name))).scalar_one()
            )

    def dead_letters(self) -> list[dict[str, Any]]:
        t = self.table("cdc_dead_letters")
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(t).order_by(t.c.id)).mappings()]

    def items(self, name: str, key: str = "id") -> dict[str, Any]:
        """{key as text: (item JSON parsed, sequence number)} of a document-mode replica
        table (the sequence part of the stored version: cdc/core/versions.py)."""
        return {k: (item, sequence_of(seq)) for k, (item, seq) in self.versions(name, key).items()}

    def versions(self, name: str, key: str = "id") -> dict[str, Any]:
        """{key as text: (item JSON parsed, version)} of a document-mode replica table."""
        t = self.table(name)
        query = select(cast(t.c[key], Text), cast(t.c.item, Text), t.c._cdc_seq)
        with self.engine.connect() as conn:
            return {
                k: (json.loads(item) if item else None, int(seq))
                for k, item, seq in conn.execute(query)
            }

    def table_names(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(inspect(conn).get_table_names(schema=self.schema))


TestDatabase = Database  # the name the `db` fixture's tests know it by


def fresh_schema(engine: Engine) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(CreateSchema(name))
    return name


def drop_schema(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(DropSchema(name, cascade=engine.dialect.name == "postgresql"))


# The session fixtures that can also start a server (tests/conftest.py); any other
# backend's server comes from CDC_TEST_<NAME>_URL (`url_engines`).
_ENGINE_FIXTURES = {"postgresql": "pg_engine", "mysql": "mysql_engine"}


def server_engine(request: pytest.FixtureRequest, name: str) -> Engine:
    """The session's engine for the server of backend `name`."""
    fixture = _ENGINE_FIXTURES.get(name)
    if fixture is not None:
        engine: Engine = request.getfixturevalue(fixture)
        return engine
    engines: Callable[[str], Engine] = request.getfixturevalue("url_engines")
    return engines(name)


def open_database(
    request: pytest.FixtureRequest, tmp_path: Path, name: str | None = None
) -> Iterator[Database]:
    """The body of a fixture parametrised over DATABASES (`request.param`, or `name`):

    @pytest.fixture(params=DATABASES)
    def database(request, tmp_path):
        yield from open_database(request, tmp_path)
    """
    name = name or request.param
    backend = backend_class(name)
    if not backend.network:  # embedded: a file of the test's own
        engine = make_engine(parse_database_url(f"{name}:///{tmp_path}/cdc.db", "test"))
        yield Database(name, engine, None)
        engine.dispose()
        return
    engine = server_engine(request, name)
    schema = fresh_schema(engine) if backend.supports_schemas else None
    yield Database(name, engine, schema)
    if schema is not None:
        drop_schema(engine, schema)
