"""Database fixtures. Integration tests run against a real PostgreSQL, never a mock.

Where the server comes from, in order:
1. a Docker engine answers → testcontainers starts `postgres:16-alpine`;
2. CDC_TEST_DATABASE_URL is set → that server (CI uses the machine's PostgreSQL);
3. otherwise → a throwaway cluster from the local binaries (initdb / pg_ctl).
If none works the tests fail: they are never skipped.

Each test gets its own schema (dropped afterwards), so tests cannot see each other's
tables, and the code's CDC_SCHEMA support is exercised on every run.

MySQL/MariaDB comes from testcontainers (`mariadb:11.4`) when Docker answers, otherwise
from CDC_TEST_MYSQL_URL; another backend's server from CDC_TEST_<NAME>_URL. Every test
that runs on several databases (the `database` fixture, `db` for those with schemas, and
the test modules' own fixtures, through `DATABASES`) runs once per backend listed in
CDC_TEST_DATABASES, by default every backend cdc registers (postgresql, mysql, sqlite:
tests/databases.py). A listed database that cannot be reached fails the run, it is not
skipped; one left out is not collected.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc.config import Settings, parse_database_url
from cdc.core.mapping import TableOptions
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.databases import (
    DATABASES,
    WITH_SCHEMAS,
    Database,
    TestDatabase,
    open_database,
    selected_databases,
    server_url,
    servers,
)

# The databases under test come from cdc's backend registry (tests/databases.py).
__all__ = ["DATABASES", "Database", "TestDatabase", "selected_databases", "servers"]


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
    configured = os.environ.get("CDC_TEST_DATABASE_URL") or server_url("postgresql")
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


# --- MySQL / MariaDB and the parametrised `db` fixture ------------------------------------


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    if _docker_answers():
        from testcontainers.mysql import MySqlContainer

        with MySqlContainer("mariadb:11.4", dialect="pymysql") as container:
            yield container.get_connection_url()
        return
    configured = server_url("mysql")
    if not configured:
        pytest.fail(
            "no MySQL/MariaDB for the tests: no Docker engine and no CDC_TEST_MYSQL_URL "
            "(e.g. mysql+pymysql://root@127.0.0.1:3306/test); or leave mysql out of "
            "CDC_TEST_DATABASES"
        )
    yield configured


@pytest.fixture(scope="session")
def mysql_engine(mysql_url: str) -> Iterator[Engine]:
    engine = make_engine(parse_database_url(mysql_url, "CDC_TEST_MYSQL_URL"))
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        pytest.fail(f"cannot connect to the test MySQL/MariaDB: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def url_engines() -> Iterator[Any]:
    """Engines for the servers of other backends, from CDC_TEST_<NAME>_URL, one per
    backend for the session."""
    made: dict[str, Engine] = {}

    def engine(name: str) -> Engine:
        if name not in made:
            url = server_url(name)
            if not url:
                pytest.fail(
                    f"no {name} server for the tests: set CDC_TEST_{name.upper()}_URL, or "
                    "leave it out of CDC_TEST_DATABASES"
                )
            made[name] = make_engine(parse_database_url(url, f"CDC_TEST_{name.upper()}_URL"))
        return made[name]

    yield engine
    for e in made.values():
        e.dispose()


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    """The database under test, once per entry of CDC_TEST_DATABASES (by default every
    registered backend): a fresh schema of a server, or a file of the test's own."""
    yield from open_database(request, tmp_path)


@pytest.fixture(params=WITH_SCHEMAS)
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[TestDatabase]:
    """`database`, among the backends with schemas: each test gets a fresh one."""
    yield from open_database(request, tmp_path)


# --- AWS, emulated by moto ----------------------------------------------------------------

AWS_REGION = "eu-central-1"  # the region of tests/factories.py's stream ARNs


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """cdc's AWS clients against moto's in-process DynamoDB, Streams and SQS."""
    from moto import mock_aws

    from cdc.aws.clients import Clients

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": AWS_REGION,
        # botocore >= 1.40 sends stream calls to account-ID endpoints
        # (ACCOUNT.streams-ddb.REGION.amazonaws.com), which moto does not route yet.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield Clients(AWS_REGION)


@pytest.fixture
def pg_role(pg_engine: Engine, pg_schema: str) -> Iterator[Any]:
    """Make login roles with exactly the given grants (`{role}` and `{schema}` are filled
    in) and engines connecting as them; dropped afterwards. For least-privilege tests."""
    made: list[tuple[str, Engine]] = []

    def make(*grants: str) -> Engine:
        role = f"cdc_role_{uuid.uuid4().hex[:8]}"
        with pg_engine.begin() as conn:
            conn.execute(text(f'create role "{role}" login'))
            for grant in grants:
                conn.execute(text(grant.format(role=role, schema=pg_schema)))
        engine = make_engine(pg_engine.url.set(username=role, password=None))
        made.append((role, engine))
        return engine

    yield make
    for role, engine in made:
        engine.dispose()
        with pg_engine.begin() as conn:
            conn.execute(text(f'drop owned by "{role}" cascade'))
            conn.execute(text(f'drop role "{role}"'))


# --- tests of a database left out of CDC_TEST_DATABASES -----------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test parametrised only over servers that CDC_TEST_DATABASES leaves out has an
    empty parameter set, which pytest would report as skipped: deselect it instead, so
    a run never counts a skip and `-ra` shows no noise for a database not asked for."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marks = item.iter_markers(name="skip")
        empty = any(
            str(m.kwargs.get("reason", "")).startswith("got empty parameter set") for m in marks
        )
        (dropped if empty else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
