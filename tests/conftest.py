"""Database fixtures. Integration tests run against a real PostgreSQL, never a mock.

Where the server comes from, in order:
1. a Docker engine answers → testcontainers starts `postgres:16-alpine`;
2. CDC_TEST_DATABASE_URL is set → that server (CI uses the machine's PostgreSQL);
3. otherwise → a throwaway cluster from the local binaries (initdb / pg_ctl).
If none works the tests fail: they are never skipped.

Each test gets its own schema (dropped afterwards), so tests cannot see each other's
tables, and the code's CDC_SCHEMA support is exercised on every run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc.apply import Replicator
from cdc.config import Settings, parse_database_url
from cdc.db import make_engine
from cdc.mapping import TableOptions


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield container.get_connection_url()
        return
    configured = os.environ.get("CDC_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    from tests.pgcluster import TempCluster

    try:
        cluster = TempCluster().init()
        cluster.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.fail(
            "no PostgreSQL for the integration tests: no Docker engine, no "
            f"CDC_TEST_DATABASE_URL, and a local cluster could not start ({exc})"
        )
    try:
        yield cluster.url
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(parse_database_url(postgres_url, "CDC_TEST_DATABASE_URL"))
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        pytest.fail(f"cannot connect to the test PostgreSQL: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_schema(pg_engine: Engine) -> Iterator[str]:
    """A fresh schema for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with pg_engine.begin() as conn:
        conn.execute(CreateSchema(name))
    yield name
    with pg_engine.begin() as conn:
        conn.execute(DropSchema(name, cascade=True))


@pytest.fixture
def pg_settings(pg_engine: Engine, pg_schema: str) -> Settings:
    return Settings(database_url=pg_engine.url, schema=pg_schema)


@pytest.fixture
def replicator(pg_engine: Engine, pg_settings: Settings) -> Replicator:
    return Replicator(pg_engine, pg_settings)


def settings_with(base: Settings, **tables: TableOptions) -> Settings:
    return Settings(database_url=base.database_url, schema=base.schema, tables=tables)


@pytest.fixture
def sqlite_settings(tmp_path: Any) -> Settings:
    return Settings(database_url=parse_database_url(f"sqlite:///{tmp_path}/cdc.db", "test"))


@pytest.fixture
def sqlite_replicator(sqlite_settings: Settings) -> Iterator[Replicator]:
    assert sqlite_settings.database_url is not None
    engine = make_engine(sqlite_settings.database_url)
    yield Replicator(engine, sqlite_settings)
    engine.dispose()
