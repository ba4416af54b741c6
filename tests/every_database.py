"""One fixture for the three databases a record-handling test must hold on: the `db`
fixture's PostgreSQL and MariaDB/MySQL (as CDC_TEST_DATABASES lists them), and SQLite
in a file of the test's own. Each gives a fresh schema (or file), cdc's replicator,
the Lambda handler pointed at it, and readers for the replica and the dead letters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, Text, cast, select

from cdc import handler as lambda_handler
from cdc.config import Settings, parse_database_url
from cdc.core.deadline import Deadline
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.conftest import DATABASES, _drop_schema, _fresh_schema
from tests.factories import FakeContext

EVERY_DATABASE = [*DATABASES, "sqlite"]


class Database:
    __test__ = False

    def __init__(self, name: str, engine: Engine, schema: str | None) -> None:
        self.name = name
        self.engine = engine
        self.schema = schema
        self.settings = Settings(database_url=engine.url, schema=schema)

    def replicator(self, settings: Settings | None = None) -> Replicator:
        return Replicator(self.engine, settings or self.settings)

    def process(self, records: list[Any]) -> Any:
        return self.replicator().process(records, Deadline.from_context(FakeContext(30_000)))

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
        from sqlalchemy import inspect

        with self.engine.connect() as conn:
            return set(inspect(conn).get_table_names(schema=self.schema))


def open_database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    """The body of a test module's fixture parametrized over EVERY_DATABASE:

    @pytest.fixture(params=EVERY_DATABASE)
    def database(request, tmp_path):
        yield from open_database(request, tmp_path)
    """
    if request.param == "sqlite":
        url = parse_database_url(f"sqlite:///{tmp_path}/cdc.db", "test")
        engine = make_engine(url)
        yield Database("sqlite", engine, None)
        engine.dispose()
        return
    engine = request.getfixturevalue(
        "pg_engine" if request.param == "postgresql" else "mysql_engine"
    )
    schema = _fresh_schema(engine)
    yield Database(request.param, engine, schema)
    _drop_schema(engine, schema)
