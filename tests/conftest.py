"""Database fixtures. Integration tests run against a real PostgreSQL, never a mock.

Where the server comes from, in order:
1. a Docker engine answers → testcontainers starts `postgres:16-alpine`;
2. CDC_TEST_DATABASE_URL is set → that server (CI uses the machine's PostgreSQL);
3. otherwise → a throwaway cluster from the local binaries (initdb / pg_ctl).
If none works the tests fail: they are never skipped.

Each test gets its own schema (dropped afterwards), so tests cannot see each other's
tables, and the code's CDC_SCHEMA support is exercised on every run.

MySQL/MariaDB comes from testcontainers (`mariadb:11.4`) when Docker answers, otherwise
from CDC_TEST_MYSQL_URL. Every test that runs on several databases (the `db` fixture,
and the test modules' own `target`/`server` fixtures, through `DATABASES`) runs once
per database server listed in CDC_TEST_DATABASES (default: postgresql,mysql), plus
SQLite where the test has a SQLite variant (it needs no server). A listed database that
cannot be reached fails the run, it is not skipped; one left out is not collected.
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

# The database servers tests can be parametrised over, by the names users write.
_SERVERS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}


def selected_databases(value: str | None) -> list[str]:
    """CDC_TEST_DATABASES as the servers it names (`mariadb` is `mysql`), in order."""
    names = [n.strip().lower() for n in (value or "postgresql,mysql").split(",") if n.strip()]
    unknown = [n for n in names if n not in _SERVERS]
    if unknown or not names:
        raise pytest.UsageError(
            f"CDC_TEST_DATABASES={value!r}: expected a comma-separated list of "
            "postgresql and mysql (or mariadb); the SQLite cases need no server and always run"
        )
    return list(dict.fromkeys(_SERVERS[n] for n in names))


# Every test that runs on several database servers takes its parameters from here, so
# CDC_TEST_DATABASES=postgresql collects no MySQL case (a machine without MySQL).
DATABASES = selected_databases(os.environ.get("CDC_TEST_DATABASES"))


def servers(*among: str) -> list[str]:
    """The selected servers among `among`: for tests written for only some of them."""
    return [name for name in DATABASES if name in among]


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


# --- MySQL / MariaDB and the parametrised `db` fixture ------------------------------------


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    if _docker_answers():
        from testcontainers.mysql import MySqlContainer

        with MySqlContainer("mariadb:11.4", dialect="pymysql") as container:
            yield container.get_connection_url()
        return
    configured = os.environ.get("CDC_TEST_MYSQL_URL")
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


class TestDatabase:
    """One database under test: its engine, a fresh schema, and helpers to read the
    replica the same way on every dialect."""

    __test__ = False  # not a test class

    def __init__(self, name: str, engine: Engine, schema: str) -> None:
        self.name = name
        self.engine = engine
        self.schema = schema
        self.settings = Settings(database_url=engine.url, schema=schema)

    def settings_with(self, **tables: Any) -> Settings:
        from cdc.core.mapping import TableConfig

        configs = {
            source: value if isinstance(value, TableConfig) else TableConfig(source, options=value)
            for source, value in tables.items()
        }
        return Settings(database_url=self.engine.url, schema=self.schema, tables=configs)

    def replicator(self, settings: Settings | None = None) -> Replicator:
        return Replicator(self.engine, settings or self.settings)

    def table(self, name: str) -> Any:
        from sqlalchemy import MetaData, Table

        return Table(name, MetaData(), autoload_with=self.engine, schema=self.schema)

    def rows(self, name: str) -> list[dict[str, Any]]:
        """Every row of a replica table, JSON columns as text (exact numbers)."""
        from sqlalchemy import Text, cast, select
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
        from sqlalchemy import func, select

        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(self.table(name))).scalar_one()
            )


def _fresh_schema(engine: Engine) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(CreateSchema(name))
    return name


def _drop_schema(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(DropSchema(name, cascade=True))
        else:
            conn.execute(DropSchema(name))


@pytest.fixture(params=DATABASES)
def db(request: pytest.FixtureRequest) -> Iterator[TestDatabase]:
    """The database under test, once per entry of CDC_TEST_DATABASES."""
    name = request.param
    engine = request.getfixturevalue("pg_engine" if name == "postgresql" else "mysql_engine")
    schema = _fresh_schema(engine)
    yield TestDatabase(name, engine, schema)
    _drop_schema(engine, schema)


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
