"""CDC_SCHEMA names a schema (PostgreSQL) or a database (MySQL) that is not there yet:
the first batch makes it, as `cdc migrate` does, instead of failing every batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.schema import DropSchema

from cdc.config import Settings
from cdc.jobs.replicate import Replicator
from tests import factories as f
from tests.databases import server_engine, servers


@pytest.fixture(params=servers("postgresql", "mysql"))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    engine = server_engine(request, request.param)
    name = f"t_missing_{uuid.uuid4().hex[:10]}"
    yield engine, name
    if inspect(engine).has_schema(name):
        with engine.begin() as conn:
            conn.execute(DropSchema(name, cascade=engine.dialect.name == "postgresql"))


def test_the_first_batch_makes_a_missing_schema(server: tuple[Engine, str]) -> None:
    # GIVEN a CDC_SCHEMA that does not exist on the server
    engine, name = server
    assert not inspect(engine).has_schema(name)
    replicator = Replicator(engine, Settings(database_url=engine.url, schema=name))

    # WHEN a batch arrives
    result = replicator.process([f.insert({"Id": 1}, 10, {"Note": "hello"})])

    # THEN the schema, the bookkeeping tables and the replica table are made, and applied
    assert (result.applied, result.failed, result.dead_lettered) == (1, 0, 0)
    tables = set(inspect(engine).get_table_names(schema=name))
    assert {"orders", "cdc_dead_letters", "cdc_checkpoints", "cdc_tombstones"} <= tables
