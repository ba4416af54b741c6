"""Deletes (README: How it works, "Deletes"; issue 5), against a real PostgreSQL,
MariaDB/MySQL and SQLite.

`deletes = "hard"` removes the row and keeps a tombstone (table, key, sequence) in
`cdc_tombstones`: a late older INSERT/MODIFY, in a later batch or in the same one, or a
backfill record (SequenceNumber "0"), cannot bring the row back; a newer upsert does,
and clears the tombstone. TTL expiries follow `ttl_deletes`. Soft deletes are the
default. Every scenario runs on a typed table (composite key) and a document-mode one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Engine, MetaData, Table, Text, cast, inspect, select

from cdc.config import Settings, load_settings
from cdc.core.jsontext import loads
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from tests.databases import DATABASES, open_database
from tests.factories import insert, modify, remove

pytestmark = pytest.mark.postgres

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"
BASE = 10**20  # sequence numbers are 21-40 digit decimal strings


@dataclass
class Target:
    engine: Engine
    schema: str | None
    url: str

    def env(self, config: Path) -> dict[str, str]:
        env = {"CDC_CONFIG": str(config), "CDC_DATABASE_URL": self.url}
        if self.schema is not None:
            env["CDC_SCHEMA"] = self.schema
        return env

    def settings(self, config: Path) -> Settings:
        return load_settings(self.env(config))

    def qualified(self, table: str) -> str:
        return f"{self.schema}.{table}" if self.schema else table

    def all(self, table: str, order_by: str | None = None) -> list[dict[str, Any]]:
        """Every row of a table, read the same way on every dialect (JSON as text)."""
        reflected = Table(table, MetaData(), autoload_with=self.engine, schema=self.schema)
        columns = [
            cast(c, Text).label(c.name) if isinstance(c.type, JSON) else c
            for c in reflected.columns
        ]
        query = select(*columns)
        if order_by is not None:
            query = query.order_by(reflected.c[order_by])
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def has_table(self, table: str) -> bool:
        return inspect(self.engine).has_table(table, schema=self.schema)


@pytest.fixture(params=DATABASES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    for database in open_database(request, tmp_path):
        yield Target(database.engine, database.schema, database.url)


@pytest.fixture
def settings(target: Target, tmp_path: Path) -> Settings:
    return target.settings(
        Path(shutil.copy(MAPPINGS / "hard_deletes.toml", tmp_path / "mapping.toml"))
    )


@pytest.fixture
def replicator(target: Target, settings: Settings) -> Replicator:
    return Replicator(target.engine, settings)


@dataclass(frozen=True)
class Kind:
    """A source table under test and how its rows look."""

    source: str
    table: str
    key_columns: tuple[str, ...]

    def keys(self, n: int) -> dict[str, Any]:
        if self.source == "Orders":
            return {"CustomerId": f"c{n}", "OrderId": n}
        return {"Id": n}

    def item(self, version: int) -> dict[str, Any]:
        return {"Total": Decimal(version)} if self.source == "Orders" else {"v": version}


TYPED = Kind("Orders", "orders", ("customer_id", "order_id"))
DOCUMENT = Kind("Docs", "docs", ("id",))


@pytest.fixture(params=[TYPED, DOCUMENT], ids=["typed", "document"])
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param


def put(kind: Kind, n: int, seq: int | str, *, event: str = "INSERT", **kw: Any) -> dict[str, Any]:
    version = int(seq) % 1000 if str(seq).isdigit() else 0
    make = insert if event == "INSERT" else modify
    return make(
        kind.keys(n),
        seq if isinstance(seq, str) else BASE + seq,
        kind.item(version),
        table=kind.source,
        **kw,
    )


def delete(kind: Kind, n: int, seq: int, **kw: Any) -> dict[str, Any]:
    return remove(kind.keys(n), BASE + seq, kind.item(0), table=kind.source, **kw)


def rows(target: Target, kind: Kind) -> dict[Any, dict[str, Any]]:
    """Rows by their first key value ("c1" / 1) → {seq, deleted}."""
    if not target.has_table(kind.table):
        return {}
    found = target.all(kind.table)
    result = {}
    for r in found:
        key = r[kind.key_columns[0]]
        key = int(key) if kind is DOCUMENT else key
        result[key] = {"seq": sequence_of(int(r["_cdc_seq"])), "deleted": bool(r["_cdc_deleted"])}
    return result


def row_key(kind: Kind, n: int) -> Any:
    return f"c{n}" if kind is TYPED else n


def tombstones(target: Target, kind: Kind | None = None) -> list[dict[str, Any]]:
    found = target.all("cdc_tombstones", order_by="key")
    if kind is not None:
        found = [t for t in found if t["table_name"] == target.qualified(kind.table)]
    return [
        {
            "key": key_text(t["key"]),
            "sequence": sequence_of(int(t["sequence"])),
            "table": t["table_name"],
        }
        for t in found
    ]


def key_text(stored: str) -> list[str]:
    """A tombstone's key (a JSON array) with each value as text: numbers may be kept
    in canonical text form."""
    return [str(v) for v in loads(stored)]


def key_values(kind: Kind, n: int) -> list[str]:
    return [f"c{n}", str(n)] if kind is TYPED else [str(n)]


def process(replicator: Replicator, *records: dict[str, Any]) -> Any:
    result = replicator.process(list(records))
    assert result.failed == 0, result.error
    assert result.dead_lettered == 0
    return result


# --- hard deletes ----------------------------------------------------------------------


def test_hard_delete_removes_the_row_and_keeps_a_tombstone(
    target: Target, replicator: Replicator, kind: Kind
) -> None:
    process(replicator, put(kind, 1, 100), put(kind, 2, 100))
    result = process(replicator, delete(kind, 1, 200))
    assert result.applied >= 1
    assert set(rows(target, kind)) == {row_key(kind, 2)}
    (stone,) = tombstones(target, kind)
    assert stone["sequence"] == BASE + 200
    assert stone["key"] == key_values(kind, 1)
    assert stone["table"] == target.qualified(kind.table)


def test_late_older_upsert_does_not_resurrect_across_batches(
    target: Target, replicator: Replicator, kind: Kind
) -> None:
    process(replicator, put(kind, 1, 100))
    process(replicator, delete(kind, 1, 300))
    process(replicator, put(kind, 1, 200))  # an INSERT delivered late
    process(replicator, put(kind, 1, 250, event="MODIFY"))
    process(replicator, put(kind, 1, 300, event="MODIFY"))  # equal: a duplicate
    assert rows(target, kind) == {}
    assert [t["sequence"] for t in tombstones(target, kind)] == [BASE + 300]


def test_late_older_upsert_does_not_resurrect_within_one_batch(
    target: Target, replicator: Replicator, kind: Kind
) -> None:
    process(replicator, put(kind, 2, 100))
    # key 1: never seen before this batch; key 2: stored; key 3: a live neighbour
    process(
        replicator,
        put(kind, 1, 100),
        delete(kind, 1, 300),
        put(kind, 1, 200, event="MODIFY"),
        delete(kind, 2, 300),
        put(kind, 2, 200, event="MODIFY"),
        put(kind, 3, 100),
    )
    assert set(rows(target, kind)) == {row_key(kind, 3)}
    assert sorted(t["sequence"] for t in tombstones(target, kind)) == [BASE + 300, BASE + 300]


def test_late_upsert_and_delete_of_other_keys_in_one_batch(
    target: Target, replicator: Replicator, kind: Kind
) -> None:
    """A batch that mixes a buried key's late insert with live keys: only the buried
    one is held back."""
    process(replicator, put(kind, 1, 100), put(kind, 2, 100))
    process(replicator, delete(kind, 1, 300))
    process(replicator, put(kind, 1, 200), put(kind, 2, 400, event="MODIFY"), put(kind, 4, 100))
    assert rows(target, kind) == {
        row_key(kind, 2): {"seq": BASE + 400, "deleted": False},
        row_key(kind, 4): {"seq": BASE + 100, "deleted": False},
    }


def test_newer_upsert_brings_the_row_back_and_clears_the_tombstone(
    target: Target, replicator: Replicator, kind: Kind
) -> None:
    process(replicator, put(kind, 1, 100))
    process(replicator, delete(kind, 1, 200))
    process(replicator, put(kind, 1, 300))
    assert rows(target, kind) == {row_key(kind, 1): {"seq": BASE + 300, "deleted": False}}
    assert tombstones(target, kind) == []
    # deleted again, brought back again, in one batch
    process(replicator, delete(kind, 1, 400), put(kind, 1, 500, event="MODIFY"))
    assert rows(target, kind) == {row_key(kind, 1): {"seq": BASE + 500, "deleted": False}}
    assert tombstones(target, kind) == []


def test_backfill_record_with_sequence_zero(
    target: Target, replicator: Replicator, kind: Kind
) -> None:
    """A backfill writes items with SequenceNumber "0": applied to a key never seen,
    superseded by any stream record, and never resurrecting a deleted key."""
    process(replicator, put(kind, 1, "0"))
    assert rows(target, kind) == {row_key(kind, 1): {"seq": 0, "deleted": False}}
    process(replicator, delete(kind, 1, 200))
    assert rows(target, kind) == {}
    process(replicator, put(kind, 1, "0"))  # the backfill runs again
    assert rows(target, kind) == {}
    assert [t["sequence"] for t in tombstones(target, kind)] == [BASE + 200]
    # a deleted key that the backfill reaches in the same batch as its delete
    process(replicator, delete(kind, 2, 100), put(kind, 2, "0"))
    assert rows(target, kind) == {}


def test_hard_delete_of_a_key_never_seen_leaves_a_tombstone(
    target: Target, replicator: Replicator, kind: Kind
) -> None:
    process(replicator, delete(kind, 7, 200))
    assert rows(target, kind) == {}
    assert [(t["key"], t["sequence"]) for t in tombstones(target, kind)] == [
        (key_values(kind, 7), BASE + 200)
    ]
    process(replicator, put(kind, 7, 100))  # the INSERT the delete overtook
    assert rows(target, kind) == {}
    process(replicator, put(kind, 7, 300))
    assert set(rows(target, kind)) == {row_key(kind, 7)}
    assert tombstones(target, kind) == []


def test_redelivered_delete_is_harmless(target: Target, replicator: Replicator, kind: Kind) -> None:
    process(replicator, put(kind, 1, 100))
    first = delete(kind, 1, 200)
    process(replicator, first)
    process(replicator, first)  # Lambda redelivers the batch
    process(replicator, delete(kind, 1, 150))  # an older delete, late
    assert rows(target, kind) == {}
    assert [t["sequence"] for t in tombstones(target, kind)] == [BASE + 200]


def test_tombstones_are_per_table(target: Target, replicator: Replicator) -> None:
    """A tombstone of one table does not bury the same key in another table."""
    process(replicator, delete(DOCUMENT, 1, 300))
    process(replicator, insert({"Id": "1"}, BASE + 100, {"User": "u"}, table="Sessions"))
    process(replicator, insert({"Id": 1}, BASE + 100, table="Other"))
    assert rows(target, DOCUMENT) == {}
    assert len(target.all("sessions")) == 1
    assert len(target.all("other")) == 1


def test_numeric_keys_that_differ_in_the_38th_digit_have_their_own_tombstones(
    target: Target, replicator: Replicator
) -> None:
    a = Decimal("0.12345678901234567890123456789012345671")
    b = Decimal("0.12345678901234567890123456789012345672")
    process(
        replicator,
        insert({"Id": a}, BASE + 1, table="Docs"),
        insert({"Id": b}, BASE + 1, table="Docs"),
    )
    assert len(target.all("docs")) == 2
    process(replicator, remove({"Id": a}, BASE + 10, table="Docs"))
    process(replicator, modify({"Id": b}, BASE + 5, {"v": 5}, table="Docs"))  # b is alive at 1
    stored = target.all("docs")
    assert [(Decimal(str(r["id"])), sequence_of(int(r["_cdc_seq"]))) for r in stored] == [
        (b, BASE + 5)
    ]
    assert [key_text(t["key"]) for t in target.all("cdc_tombstones")] == [[str(a)]]


# --- TTL expiries -----------------------------------------------------------------------


def test_ttl_remove_with_ttl_deletes_ignore_keeps_the_row(
    target: Target, replicator: Replicator
) -> None:
    process(replicator, insert({"Id": "s1"}, BASE + 100, {"User": "u1"}, table="Sessions"))
    result = process(
        replicator, remove({"Id": "s1"}, BASE + 200, {"User": "u1"}, table="Sessions", ttl=True)
    )
    assert result.applied == 0
    (row,) = target.all("sessions")
    assert (row["user"], sequence_of(int(row["_cdc_seq"])), bool(row["_cdc_deleted"])) == (
        "u1",
        BASE + 100,
        False,
    )
    assert tombstones(target) == []
    # a REMOVE by a user (not TTL) still deletes
    process(replicator, remove({"Id": "s1"}, BASE + 300, table="Sessions"))
    assert target.all("sessions") == []
    assert [t["sequence"] for t in tombstones(target)] == [BASE + 300]


def test_ttl_remove_with_ttl_deletes_ignore_on_a_soft_table(
    target: Target, replicator: Replicator
) -> None:
    process(replicator, insert({"Id": 1}, BASE + 100, {"v": 1}, table="Keep"))
    process(replicator, remove({"Id": 1}, BASE + 200, {"v": 1}, table="Keep", ttl=True))
    (row,) = target.all("keep")
    assert (sequence_of(int(row["_cdc_seq"])), bool(row["_cdc_deleted"])) == (BASE + 100, False)


def test_ttl_remove_deletes_by_default(target: Target, replicator: Replicator, kind: Kind) -> None:
    process(replicator, put(kind, 1, 100))
    process(replicator, delete(kind, 1, 200, ttl=True))
    assert rows(target, kind) == {}
    assert [t["sequence"] for t in tombstones(target, kind)] == [BASE + 200]


# --- soft deletes are the default -------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "table", "keys", "item"),
    [("Items", "items", {"Id": "i1"}, {"Qty": 3}), ("Plain", "plain", {"Id": 1}, {"v": 1})],
    ids=["typed", "document"],
)
def test_soft_delete_is_the_default(
    target: Target,
    replicator: Replicator,
    source: str,
    table: str,
    keys: dict[str, Any],
    item: dict[str, Any],
) -> None:
    process(replicator, insert(keys, BASE + 100, item, table=source))
    process(replicator, remove(keys, BASE + 200, item, table=source))
    process(replicator, insert(keys, BASE + 150, item, table=source))  # late: stays deleted
    (row,) = target.all(table)
    assert (sequence_of(int(row["_cdc_seq"])), bool(row["_cdc_deleted"])) == (BASE + 200, True)
    assert tombstones(target) == []
    process(replicator, modify(keys, BASE + 300, item, table=source))
    (row,) = target.all(table)
    assert (sequence_of(int(row["_cdc_seq"])), bool(row["_cdc_deleted"])) == (BASE + 300, False)


def test_defaults_section_makes_every_table_hard_delete(target: Target, tmp_path: Path) -> None:
    path = tmp_path / "defaults.toml"
    path.write_text('[defaults]\ndeletes = "hard"\n', encoding="utf-8")
    replicator = Replicator(target.engine, target.settings(path))
    process(replicator, insert({"Id": 1}, BASE + 100, table="Anything"))
    process(replicator, remove({"Id": 1}, BASE + 200, table="Anything"))
    process(replicator, insert({"Id": 1}, BASE + 150, table="Anything"))
    assert target.all("anything") == []
    (stone,) = target.all("cdc_tombstones")
    assert key_text(stone["key"]) == ["1"] and sequence_of(int(stone["sequence"])) == BASE + 200
