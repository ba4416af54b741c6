"""alembic from the mapping (issue 5), against a real PostgreSQL.

- `cdc migrate` creates the bookkeeping tables and every typed table of the mapping;
  running it twice changes nothing;
- when the mapping gains a column, `cdc migrate` fails naming it, and `alembic revision
  --autogenerate` writes a migration that adds it (and never drops the document-mode
  tables that live in the same schema); applying it adds the column (the user's
  directory and `cdc revision`: tests/test_user_revisions.py);
- offline mode (`cdc migrate --sql`) prints schema-qualified DDL and touches nothing.

alembic runs on a copy of migrations/ so the repository's versions/ stays as it is.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

from cdc.app.cli import main
from cdc.config import load_settings
from cdc.jobs.replicate import Replicator
from tests.factories import insert

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"
BASE = 10**20
BOOKKEEPING = {"cdc_dead_letters", "cdc_checkpoints", "cdc_tombstones"}
V1_COLUMNS = {
    "customer_id",
    "order_id",
    "total",
    "placed_at",
    "tags",
    "lines",
    "extra",
    "_cdc_seq",
    "_cdc_deleted",
    "_cdc_event_time",
    "_cdc_applied_at",
}


@pytest.fixture
def env(
    pg_engine: Engine, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of `cdc migrate` and of alembic's env.py, mapping v1."""
    for name in ("v1", "v2"):
        shutil.copy(MAPPINGS / f"migrate_{name}.toml", tmp_path / f"{name}.toml")
    values = {
        "CDC_DATABASE_URL": pg_engine.url.render_as_string(hide_password=False),
        "CDC_SCHEMA": pg_schema,
        "CDC_CONFIG": str(tmp_path / "v1.toml"),
    }
    monkeypatch.delenv("CDC_DATABASE_SECRET_ARN", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def use_mapping(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str) -> None:
    monkeypatch.setenv("CDC_CONFIG", str(tmp_path / f"{version}.toml"))


def tables(engine: Engine, schema: str) -> set[str]:
    return set(inspect(engine).get_table_names(schema=schema))


def columns(engine: Engine, schema: str, table: str) -> dict[str, Any]:
    return {c["name"]: c for c in inspect(engine).get_columns(table, schema=schema)}


def snapshot(engine: Engine, schema: str) -> dict[str, Any]:
    """Tables, their columns with types and nullability, indexes, and the revision."""
    inspector = inspect(engine)
    shape: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names(schema=schema)):
        shape[table] = (
            [
                (c["name"], str(c["type"]), c["nullable"])
                for c in inspector.get_columns(table, schema=schema)
            ],
            inspector.get_pk_constraint(table, schema=schema)["constrained_columns"],
            sorted(i["name"] for i in inspector.get_indexes(table, schema=schema)),
        )
    with engine.connect() as conn:
        shape["revision"] = (
            conn.execute(text(f'select version_num from "{schema}".alembic_version'))
            .scalars()
            .all()
        )
    return shape


def migrate(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    assert main(["migrate", *args]) == code
    captured = capsys.readouterr()
    return captured.out + captured.err


def alembic_config(tmp_path: Path) -> tuple[Config, Path]:
    """alembic on a copy of migrations/ (env.py reads CDC_* from the environment)."""
    scripts = tmp_path / "migrations"
    if not scripts.exists():
        shutil.copytree(ROOT / "migrations", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    config = Config()
    config.set_main_option("script_location", str(scripts))
    return config, scripts


def upgrade_ops(script: str) -> list[str]:
    """The `op.*` calls of a revision's upgrade(), in order."""
    tree = ast.parse(script)
    (upgrade,) = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "upgrade"]
    return [
        node.func.attr
        for node in ast.walk(upgrade)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "op"
    ]


# --- cdc migrate ------------------------------------------------------------------------


def test_migrate_creates_bookkeeping_and_typed_tables(
    env: dict[str, str], pg_engine: Engine, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    output = migrate(capsys)
    assert "warning" not in output.lower()
    assert BOOKKEEPING | {"orders", "alembic_version"} <= tables(pg_engine, pg_schema)

    orders = columns(pg_engine, pg_schema, "orders")
    assert set(orders) == V1_COLUMNS
    assert inspect(pg_engine).get_pk_constraint("orders", schema=pg_schema)[
        "constrained_columns"
    ] == [
        "customer_id",
        "order_id",
    ]
    types = {name: c["type"].compile(dialect=pg_engine.dialect) for name, c in orders.items()}
    assert types["total"] == "NUMERIC(12, 2)" and not orders["total"]["nullable"]
    assert types["order_id"] == "BIGINT"
    assert types["tags"] == "TEXT[]"
    assert types["lines"] == "JSONB" and types["extra"] == "JSONB"
    assert types["placed_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["_cdc_seq"] == "NUMERIC(65, 0)"  # versions: cdc/core/versions.py

    # the table from `cdc migrate` is the one the replicator writes (auto_create = false)
    replicator = Replicator(pg_engine, load_settings(env))
    rec = insert(
        {"CustomerId": "c1", "OrderId": 1}, BASE + 1, {"Total": 12, "Tags": {"a"}}, table="Orders"
    )
    result = replicator.process([rec])
    assert result.failed == 0 and result.dead_lettered == 0 and result.applied == 1


def test_migrate_twice_is_a_no_op(
    env: dict[str, str], pg_engine: Engine, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate(capsys)
    before = snapshot(pg_engine, pg_schema)
    output = migrate(capsys)
    assert "warning" not in output.lower()
    assert snapshot(pg_engine, pg_schema) == before


def test_migrate_fails_when_the_mapping_has_a_column_no_revision_added(
    env: dict[str, str],
    pg_engine: Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrate(capsys)
    use_mapping(monkeypatch, tmp_path, "v2")
    output = migrate(capsys, code=1)  # it fails while the database differs
    assert "differs from the mapping in 2 way(s)" in output
    assert f"table {pg_schema}.orders: column coupon (TEXT) is in the mapping" in output
    assert "column discount (NUMERIC(5, 2)) is in the mapping" in output
    assert output.count("coupon") == 1  # once, readably: no alembic tuples
    assert "Column(" not in output
    # it warns, it does not alter the table behind alembic's back
    assert set(columns(pg_engine, pg_schema, "orders")) == V1_COLUMNS


def test_migrate_creates_a_table_added_to_the_mapping(
    env: dict[str, str],
    pg_engine: Engine,
    pg_schema: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrate(capsys)
    mapping = Path(env["CDC_CONFIG"])
    mapping.write_text(
        mapping.read_text()
        + '\n[tables.Customers]\nkeys = ["Id"]\n\n[tables.Customers.columns]\nId = "text"\n',
        encoding="utf-8",
    )
    migrate(capsys)
    assert {"orders", "customers"} <= tables(pg_engine, pg_schema)


# --- autogenerate -----------------------------------------------------------------------


def _with_document_table(env: dict[str, str], pg_engine: Engine, pg_schema: str) -> None:
    """A document-mode table in the same schema, created at run time (no revision)."""
    result = Replicator(pg_engine, load_settings(env)).process(
        [insert({"Id": 1}, BASE + 1, table="AuditLog")]
    )
    assert result.failed == 0 and result.dead_lettered == 0
    assert "audit_log" in tables(pg_engine, pg_schema)


def test_autogenerate_adds_the_new_column(
    env: dict[str, str],
    pg_engine: Engine,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrate(capsys)
    _with_document_table(env, pg_engine, pg_schema)
    use_mapping(monkeypatch, tmp_path, "v2")
    config, scripts = alembic_config(tmp_path)

    revision = command.revision(config, message="add coupon", autogenerate=True)
    assert revision is not None and not isinstance(revision, list)
    script = Path(revision.path).read_text(encoding="utf-8")
    assert Path(revision.path).parent == scripts / "versions"
    ops = upgrade_ops(script)
    assert ops == ["add_column", "add_column"], script
    assert re.search(r"op\.add_column\(\s*'orders',\s*sa\.Column\('coupon'", script), script
    assert re.search(r"op\.add_column\(\s*'orders',\s*sa\.Column\('discount'", script), script
    assert f"schema='{pg_schema}'" in script
    assert "drop_table" not in script.split("def downgrade")[0]
    assert "audit_log" not in script

    command.upgrade(config, "head")
    orders = columns(pg_engine, pg_schema, "orders")
    assert set(orders) == V1_COLUMNS | {"coupon", "discount"}
    assert str(orders["coupon"]["type"]) == "TEXT" and orders["coupon"]["nullable"]
    assert "audit_log" in tables(pg_engine, pg_schema)
    with pg_engine.connect() as conn:
        head = conn.execute(
            text(f'select version_num from "{pg_schema}".alembic_version')
        ).scalar_one()
    assert head == revision.revision

    # the replicator fills the new columns
    rec = insert(
        {"CustomerId": "c1", "OrderId": 1},
        BASE + 2,
        {"Total": 5, "Coupon": "SAVE", "Discount": 1},
        table="Orders",
    )
    assert Replicator(pg_engine, load_settings()).process([rec]).applied == 1
    with pg_engine.connect() as conn:
        row = conn.execute(text(f'select coupon, discount from "{pg_schema}".orders')).one()
    assert tuple(row) == ("SAVE", 1)
    # the column has the declared precision and scale, not an unconstrained numeric
    assert str(columns(pg_engine, pg_schema, "orders")["discount"]["type"]) == "NUMERIC(5, 2)"
    # the database now matches the mapping: nothing left to generate
    command.check(config)


def test_autogenerate_without_a_mapping_change_is_empty(
    env: dict[str, str],
    pg_engine: Engine,
    pg_schema: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing to do must give an empty revision: no spurious type changes on our own
    column types, no drops of tables alembic did not create."""
    migrate(capsys)
    _with_document_table(env, pg_engine, pg_schema)
    config, _ = alembic_config(tmp_path)
    revision = command.revision(config, message="nothing", autogenerate=True)
    assert revision is not None and not isinstance(revision, list)
    script = Path(revision.path).read_text(encoding="utf-8")
    assert upgrade_ops(script) == [], script


# --- offline mode -----------------------------------------------------------------------


def test_offline_sql_is_schema_qualified_and_touches_nothing(
    env: dict[str, str], pg_engine: Engine, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = migrate(capsys, "--sql")
    created = re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\S+)", sql)
    assert created, sql
    names = {name.replace('"', "") for name in created}
    assert {f"{pg_schema}.{t}" for t in BOOKKEEPING | {"alembic_version"}} <= names
    assert all(name.startswith(f"{pg_schema}.") for name in names), names
    assert re.search(rf"INSERT INTO \"?{pg_schema}\"?\.alembic_version", sql)
    assert tables(pg_engine, pg_schema) == set()


def test_offline_sql_includes_the_configured_tables(
    env: dict[str, str], pg_engine: Engine, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Online `cdc migrate` creates the mapping's tables; the SQL offline mode prints
    for a DBA to run must create them too, or auto_create = false tables never exist."""
    sql = migrate(capsys, "--sql")
    assert re.search(rf"CREATE TABLE (?:IF NOT EXISTS )?\"?{pg_schema}\"?\.orders", sql), (
        re.findall(r"CREATE TABLE \S+", sql)
    )
    assert tables(pg_engine, pg_schema) == set()
