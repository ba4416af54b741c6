"""`cdc purge` (issue 5), through the command line, against PostgreSQL and SQLite.

Tombstones older than `--older-than` go; younger ones stay. `--soft-deleted` also removes
old soft-deleted rows from every replica table (typed and document) and keeps live rows
and young soft-deleted ones. Durations under the stream's 24 hours need `--force`;
`--dry-run` counts and deletes nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, text, update

from cdc.app.cli import main
from cdc.config import load_settings, parse_database_url
from cdc.core.jsontext import loads
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.conftest import servers
from tests.factories import insert, remove

pytestmark = pytest.mark.postgres

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"
BASE = 10**20
OLD = timedelta(hours=72)
MIDDLE = timedelta(hours=3)


@dataclass
class Target:
    engine: Engine
    schema: str | None
    url: str
    config: Path

    def env(self) -> dict[str, str]:
        env = {"CDC_CONFIG": str(self.config), "CDC_DATABASE_URL": self.url}
        if self.schema is not None:
            env["CDC_SCHEMA"] = self.schema
        return env

    def name(self, table: str) -> str:
        return f'"{self.schema}"."{table}"' if self.schema else f'"{table}"'

    def query(self, sql: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(sql)).mappings()]


@pytest.fixture(params=servers("postgresql", "sqlite"))
def target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    config = Path(shutil.copy(MAPPINGS / "hard_deletes.toml", tmp_path / "mapping.toml"))
    if request.param == "postgresql":
        engine = request.getfixturevalue("pg_engine")
        schema = request.getfixturevalue("pg_schema")
        found = Target(engine, schema, engine.url.render_as_string(hide_password=False), config)
    else:
        url = f"sqlite:///{tmp_path}/replica.db"
        found = Target(make_engine(parse_database_url(url, "test")), None, url, config)
    for variable in ("CDC_DATABASE_URL", "CDC_DATABASE_SECRET_ARN", "CDC_SCHEMA", "CDC_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in found.env().items():
        monkeypatch.setenv(variable, value)
    yield found
    if found.schema is None:
        found.engine.dispose()


def age(target: Target, table: str, column: str, by: timedelta, where: Any) -> None:
    """Move rows back in time (UPDATE), as if written `by` ago."""
    with target.engine.begin() as conn:
        reflected = Table(table, MetaData(), autoload_with=conn, schema=target.schema)
        conn.execute(
            update(reflected).where(where(reflected.c)).values({column: datetime.now(UTC) - by})
        )


@pytest.fixture
def populated(target: Target) -> Target:
    """Tombstones: k-old (72h), k-middle (3h), k-young. Soft-deleted rows, in a typed
    and a document table: old, middle, young; live rows: old and young."""
    replicator = Replicator(target.engine, load_settings(target.env()))
    records = []
    for n, name in enumerate(("old", "middle", "young"), start=1):
        keys = {"CustomerId": f"k-{name}", "OrderId": n}
        records += [
            insert(keys, BASE + 1, {"Total": 1}, table="Orders"),
            remove(keys, BASE + 2, table="Orders"),
        ]
        records += [
            insert({"Id": f"i-{name}"}, BASE + 1, {"Qty": n}, table="Items"),
            remove({"Id": f"i-{name}"}, BASE + 2, table="Items"),
        ]
        records += [
            insert({"Id": n}, BASE + 1, {"v": n}, table="Plain"),
            remove({"Id": n}, BASE + 2, table="Plain"),
        ]
        records += [insert({"Id": f"live-{name}"}, BASE + 1, {"Qty": 1}, table="Items")]
        records += [insert({"Id": 100 + n}, BASE + 1, {"v": n}, table="Plain")]
    records.append(
        insert({"CustomerId": "k-live", "OrderId": 9}, BASE + 1, {"Total": 1}, table="Orders")
    )
    result = replicator.process(records)
    assert result.failed == 0 and result.dead_lettered == 0, result.error

    for name, by in (("old", OLD), ("middle", MIDDLE)):
        age(
            target,
            "cdc_tombstones",
            "deleted_at",
            by,
            lambda c, name=name: c["key"].like(f'%"k-{name}"%'),
        )
        age(
            target,
            "items",
            "_cdc_applied_at",
            by,
            lambda c, name=name: c.id.in_([f"i-{name}", f"live-{name}"]),
        )
        n = {"old": 1, "middle": 2}[name]
        age(target, "plain", "_cdc_applied_at", by, lambda c, n=n: c.id.in_([n, 100 + n]))
    age(target, "orders", "_cdc_applied_at", OLD, lambda c: c.customer_id == "k-live")
    assert tombstone_keys(target) == {"k-old", "k-middle", "k-young"}
    return target


def tombstone_keys(target: Target) -> set[str]:
    return {
        loads(r["key"])[0] for r in target.query(f"select key from {target.name('cdc_tombstones')}")
    }


def item_ids(target: Target) -> set[str]:
    return {r["id"] for r in target.query(f"select id from {target.name('items')}")}


def plain_ids(target: Target) -> set[int]:
    return {int(r["id"]) for r in target.query(f"select id from {target.name('plain')}")}


def order_keys(target: Target) -> set[str]:
    return {
        r["customer_id"] for r in target.query(f"select customer_id from {target.name('orders')}")
    }


ALL_ITEMS = {"i-old", "i-middle", "i-young", "live-old", "live-middle", "live-young"}
ALL_PLAIN = {1, 2, 3, 101, 102, 103}


def test_purge_removes_old_tombstones_and_keeps_young_ones(
    populated: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purge", "--older-than", "48h"]) == 0
    assert tombstone_keys(populated) == {"k-middle", "k-young"}
    # no --soft-deleted: replica rows untouched
    assert item_ids(populated) == ALL_ITEMS
    assert plain_ids(populated) == ALL_PLAIN
    assert order_keys(populated) == {"k-live"}
    out = capsys.readouterr().out
    assert "1 tombstone" in out


def test_purge_soft_deleted_rows(populated: Target, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["purge", "--older-than", "48h", "--soft-deleted"]) == 0
    assert tombstone_keys(populated) == {"k-middle", "k-young"}
    assert item_ids(populated) == ALL_ITEMS - {"i-old"}
    assert plain_ids(populated) == ALL_PLAIN - {1}
    assert order_keys(populated) == {"k-live"}  # old but live
    # bookkeeping tables keep their rows
    assert populated.query(f"select * from {populated.name('cdc_checkpoints')}") != []
    out = capsys.readouterr().out
    assert "items" in out and "plain" in out


def test_purge_duration_under_a_day_needs_force(
    populated: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purge", "--older-than", "1h", "--soft-deleted"]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "Traceback" not in err
    assert "--older-than 1h is shorter" in err  # as typed, not 1:00:00
    assert tombstone_keys(populated) == {"k-old", "k-middle", "k-young"}
    assert item_ids(populated) == ALL_ITEMS

    assert main(["purge", "--older-than", "1h", "--soft-deleted", "--force"]) == 0
    assert tombstone_keys(populated) == {"k-young"}
    assert item_ids(populated) == ALL_ITEMS - {"i-old", "i-middle"}
    assert plain_ids(populated) == ALL_PLAIN - {1, 2}


def test_purge_dry_run_deletes_nothing(
    populated: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purge", "--older-than", "48h", "--soft-deleted", "--dry-run"]) == 0
    assert tombstone_keys(populated) == {"k-old", "k-middle", "k-young"}
    assert item_ids(populated) == ALL_ITEMS
    assert plain_ids(populated) == ALL_PLAIN
    out = capsys.readouterr().out
    assert "would delete 1 tombstone" in out
    assert out.count("would delete 1 soft-deleted") == 2  # items and plain; orders has none


def test_purged_tombstone_no_longer_buries_the_key(populated: Target) -> None:
    """What purge trades away, and why it waits: once a tombstone is gone, a (by then
    impossible) late record of that key would be applied."""
    assert main(["purge", "--older-than", "48h"]) == 0
    replicator = Replicator(populated.engine, load_settings(populated.env()))
    late = insert({"CustomerId": "k-old", "OrderId": 1}, BASE + 1, {"Total": 1}, table="Orders")
    kept = insert({"CustomerId": "k-young", "OrderId": 3}, BASE + 1, {"Total": 1}, table="Orders")
    assert replicator.process([late, kept]).failed == 0
    assert order_keys(populated) == {"k-live", "k-old"}


@pytest.mark.parametrize("duration", ["48", "two days", "-1h"])
def test_purge_rejects_a_malformed_duration(
    target: Target, duration: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["purge", f"--older-than={duration}"])
    assert exited.value.code == 2
    assert "duration" in capsys.readouterr().err
