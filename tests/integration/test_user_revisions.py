"""The user's revisions of the mapping live in a directory of theirs (issue 12, item 17).

`migrations = "DIR"` in the mapping file (relative to it) or CDC_MIGRATIONS_DIR names it;
`cdc revision -m "..."` autogenerates a revision there, on the branch `mapping`, apart
from cdc's own revisions (0001 → 0002 → …), and `cdc migrate` upgrades every head.

From a wheel installed in a fresh venv, each command a separate process, against
PostgreSQL; in process against PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.schema import CreateSchema, DropSchema

from cdc.app.cli import main
from cdc.config import load_settings, parse_database_url
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from cdc.sql.migrations import alembic_config
from tests.factories import insert
from tests.places import Place, place_fixture  # noqa: F401

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
BASE = 10**20

V1 = """migrations = "revisions"

[tables.Orders]
keys = ["CustomerId", "OrderId"]

[tables.Orders.columns]
CustomerId = "text"
OrderId = "bigint"
Total = { type = "numeric(12,2)", required = true }
"""
V2 = V1.replace("numeric(12,2)", "numeric(12,3)") + 'Coupon = "text"\n'
V3 = V2 + 'Weight = "double"\n'


def cdc_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def header(path: Path) -> dict[str, Any]:
    """revision, down_revision and branch_labels of a revision file."""
    values: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            assert node.value is not None
            values[node.target.id] = ast.literal_eval(node.value)
    return values


def revision_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.py"), key=lambda p: p.stat().st_mtime_ns)


def write(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


# --- from a wheel, as a user installs it ---------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cdc` of the wheel built from this checkout, installed in a new venv."""
    where = tmp_path_factory.mktemp("wheel")
    dist = where / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (where / "dist").glob("cdc-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True, timeout=300)
    install = subprocess.run(
        [str(where / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    return where / "venv" / "bin" / "cdc"


def test_revisions_from_a_wheel_install_go_to_the_users_directory(
    installed: Path, tmp_path: Path, postgres_url: str, pg_engine: Engine, pg_schema: str
) -> None:
    work = tmp_path / "project"
    work.mkdir()
    revisions = work / "revisions"
    package_versions = shipped(installed)
    assert package_versions  # cdc's own revisions ship in the wheel
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "CDC_DATABASE_URL": postgres_url,
        "CDC_SCHEMA": pg_schema,
    }

    def cdc(mapping: str, *args: str) -> subprocess.CompletedProcess[str]:
        config = write(work / f"{mapping}.toml", {"v1": V1, "v2": V2, "v3": V3}[mapping])
        return subprocess.run(
            [str(installed), *args],
            capture_output=True, text=True, timeout=300, cwd=work,
            env={**env, "CDC_CONFIG": str(config)},
        )  # fmt: skip

    first = cdc("v1", "migrate")
    assert first.returncode == 0, first.stderr

    drift = cdc("v2", "migrate")  # the mapping changed, no revision yet
    assert drift.returncode == 1
    assert "differs from the mapping in 2 way(s)" in drift.stderr, drift.stderr

    made = cdc("v2", "revision", "-m", "orders: coupon, total to 3 decimals")
    assert made.returncode == 0, made.stdout + made.stderr
    (one,) = revision_files(revisions)
    assert str(one) in made.stdout
    assert header(one)["down_revision"] is None  # a root of its own, beside cdc's chain
    assert header(one)["branch_labels"] == ("mapping",)
    script = one.read_text(encoding="utf-8")
    assert "op.add_column('orders', sa.Column('coupon'" in script, script
    assert "alter_column('orders', 'total'" in script, script
    assert "cdc_" not in script.split("def downgrade")[0]  # never cdc's bookkeeping

    applied = cdc("v2", "migrate")
    assert applied.returncode == 0, applied.stderr
    columns = {
        c["name"]: str(c["type"])
        for c in inspect(pg_engine).get_columns("orders", schema=pg_schema)
    }
    assert columns["total"] == "NUMERIC(12, 3)" and columns["coupon"] == "TEXT"
    assert revisions_in(pg_engine, pg_schema) == cdc_heads() | {header(one)["revision"]}

    # 12.345 is applied exactly now, through the installed package.
    rec = insert(
        {"CustomerId": "c", "OrderId": 1}, BASE + 1, {"Total": Decimal("12.345")}, table="Orders"
    )
    event = write(work / "event.json", json.dumps({"Records": [rec]}))
    replay = cdc("v2", "replay", str(event))
    assert replay.returncode == 0 and "1 applied" in replay.stdout, replay.stdout + replay.stderr
    with pg_engine.connect() as conn:
        total = conn.execute(text(f'select total from "{pg_schema}".orders')).scalar_one()
    assert str(total) == "12.345"

    second = cdc("v3", "revision", "-m", "orders: weight")
    assert second.returncode == 0, second.stderr
    one_, two = revision_files(revisions)
    assert one_ == one and header(two)["down_revision"] == header(one)["revision"]
    assert cdc("v3", "migrate").returncode == 0
    assert revisions_in(pg_engine, pg_schema) == cdc_heads() | {header(two)["revision"]}

    # Nothing was written into the installed package.
    assert shipped(installed) == package_versions


def shipped(cdc: Path) -> list[str]:
    """cdc's own revision files in the venv of `cdc`."""
    venv = cdc.parents[1]
    return sorted(p.name for p in venv.glob("lib/python*/site-packages/cdc/migrations/versions/*"))


def revisions_in(engine: Engine, schema: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(text(f'select version_num from "{schema}".alembic_version')).scalars()
        )


# --- in process, on every database --------------------------------------------------------


def use(monkeypatch: pytest.MonkeyPatch, place: Place, config: Path, **extra: str) -> None:
    for name, value in place.env(config, **extra).items():
        monkeypatch.setenv(name, value)


def test_cdc_revision_and_migrate_on_every_database(
    place: Place,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same cycle in process; here the directory comes from CDC_MIGRATIONS_DIR,
    which wins over the mapping file's `migrations`."""
    mine = tmp_path / "elsewhere"
    use(monkeypatch, place, write(tmp_path / "v1.toml", V1), CDC_MIGRATIONS_DIR=str(mine))
    mine.mkdir()
    assert main(["migrate"]) == 0
    use(monkeypatch, place, write(tmp_path / "v2.toml", V2), CDC_MIGRATIONS_DIR=str(mine))
    assert main(["migrate"]) == 1
    assert main(["revision", "-m", "orders: coupon"]) == 0
    (one,) = revision_files(mine)
    assert not (tmp_path / "revisions").exists()
    assert main(["migrate"]) == 0, capsys.readouterr()
    assert "coupon" in place.columns("orders")
    if place.name != "sqlite":
        assert "(12, 3)" in place.columns("orders")["total"]
    assert place.revisions() == cdc_heads() | {header(one)["revision"]}

    assert main(["revision", "-m", "by hand", "--empty"]) == 0
    _, two = revision_files(mine)
    assert header(two)["down_revision"] == header(one)["revision"]
    assert main(["migrate"]) == 0
    assert place.revisions() == cdc_heads() | {header(two)["revision"]}


def test_cdc_revision_without_a_directory_says_how_to_set_one(
    place: Place,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use(monkeypatch, place, write(tmp_path / "m.toml", V1.replace('migrations = "revisions"', "")))
    monkeypatch.delenv("CDC_MIGRATIONS_DIR", raising=False)
    assert main(["revision", "-m", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "migrations" in err and "CDC_MIGRATIONS_DIR" in err


OLD_STYLE = '''"""orders: add coupon (by `alembic revision` in a checkout, the old procedure)

Revision ID: 1a2b3c4d5e6f
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "1a2b3c4d5e6f"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    context = op.get_context()
    schema = context.opts.get("version_table_schema")
    text = mysql.LONGTEXT() if context.dialect.name in ("mysql", "mariadb") else sa.Text()
    op.add_column("orders", sa.Column("coupon", text, nullable=True), schema=schema)


def downgrade() -> None:
    pass
'''


def test_revisions_written_into_cdcs_directory_before_keep_working_from_yours(
    place: Place,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The upgrade path: a revision of the old procedure (on cdc's chain, after 0002),
    moved into the user's directory, is applied once, and `cdc revision` continues
    from it."""
    use(monkeypatch, place, write(tmp_path / "v1.toml", V1))
    assert main(["migrate"]) == 0
    (tmp_path / "revisions").mkdir()
    write(tmp_path / "revisions" / "20261201_1a2b3c4d5e6f_orders_add_coupon.py", OLD_STYLE)
    use(monkeypatch, place, write(tmp_path / "v2.toml", V1 + 'Coupon = "text"\n'))

    assert main(["migrate"]) == 0, capsys.readouterr()
    assert "coupon" in place.columns("orders")
    assert "1a2b3c4d5e6f" in place.revisions()
    assert main(["migrate"]) == 0  # again: nothing to do

    assert main(["revision", "-m", "next", "--empty"]) == 0
    (new,) = [p for p in revision_files(tmp_path / "revisions") if "1a2b3c4d5e6f" not in p.name]
    assert header(new)["down_revision"] == "1a2b3c4d5e6f"
    assert main(["migrate"]) == 0
    assert header(new)["revision"] in place.revisions()


def test_a_new_database_gets_the_mapping_as_it_is_and_your_revisions_stamped(
    place: Place,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A new environment: your revisions alter tables no revision created, so they are
    not run there; the tables are made as the mapping is and your branch is stamped."""
    use(monkeypatch, place, write(tmp_path / "v1.toml", V1))
    assert main(["migrate"]) == 0
    use(monkeypatch, place, write(tmp_path / "v2.toml", V2))
    assert main(["revision", "-m", "orders: coupon"]) == 0
    (one,) = revision_files(tmp_path / "revisions")
    expected = place.columns("orders") | {}
    assert main(["migrate"]) == 0

    with fresh_database(place, tmp_path) as new:
        use(monkeypatch, new, tmp_path / "v2.toml")
        assert main(["migrate"]) == 0, capsys.readouterr()
        assert new.revisions() == cdc_heads() | {header(one)["revision"]}
        assert new.columns("orders") == place.columns("orders") != expected
        assert main(["migrate"]) == 0  # and again: nothing to do
        use(monkeypatch, new, write(tmp_path / "v3.toml", V3))
        assert main(["revision", "-m", "orders: weight"]) == 0  # continues the branch
        assert main(["migrate"]) == 0
        assert "weight" in new.columns("orders")


@contextmanager
def fresh_database(place: Place, tmp_path: Path) -> Iterator[Place]:
    """Another empty database (schema) on the same server, or SQLite file."""
    if place.schema is None:
        url = f"sqlite:///{tmp_path}/new.db"
        engine = make_engine(parse_database_url(url, "test"))
        yield Place(place.name, engine, None, url)
        engine.dispose()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with place.engine.begin() as conn:
        conn.execute(CreateSchema(schema))
    try:
        yield Place(place.name, place.engine, schema, place.url)
    finally:
        with place.engine.begin() as conn:
            conn.execute(DropSchema(schema, cascade=place.name == "postgresql"))


def test_tables_the_function_made_first_take_your_branch_as_applied(
    place: Place,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The function met a new database first (it runs without your revisions) and made
    the tables as the mapping is: `cdc migrate` then stamps your branch, as the database
    already matches, instead of failing on a column already there."""
    use(monkeypatch, place, write(tmp_path / "v1.toml", V1))
    assert main(["migrate"]) == 0
    use(monkeypatch, place, write(tmp_path / "v2.toml", V2))
    assert main(["revision", "-m", "orders: coupon"]) == 0
    (one,) = revision_files(tmp_path / "revisions")
    assert main(["migrate"]) == 0

    with fresh_database(place, tmp_path) as new:
        task = tmp_path / "task"  # the function's package: the mapping, no revisions
        task.mkdir()
        lambda_like = load_settings(new.env(write(task / "mapping.toml", V2)))
        rec = insert({"CustomerId": "c", "OrderId": 1}, BASE + 1, {"Total": 1}, table="Orders")
        assert Replicator(new.engine, lambda_like).process([rec]).applied == 1
        assert new.revisions() == cdc_heads()

        use(monkeypatch, new, tmp_path / "v2.toml")
        assert main(["migrate"]) == 0, capsys.readouterr()
        assert new.revisions() == cdc_heads() | {header(one)["revision"]}
