"""Sets with duplicate members are stored de-duplicated, on every database, in document
mode and in typed columns (issue 12, item 16): the stored JSON used to keep the
duplicates that cdc's own Python decoding (and boto3's, and `cdc verify`'s) drops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cdc.config import load_settings
from cdc.core.deadline import Deadline
from cdc.core.jsontext import loads
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import FakeContext, insert

DUPLICATES = {
    "ns": {"NS": ["2", "1", "1.0", "10", "2"]},
    "ss": {"SS": ["b", "a", "b"]},
    "bs": {"BS": ["AA==", "/w==", "AB=="]},
}


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def test_document_mode_stores_each_set_member_once(database: Database) -> None:
    # GIVEN an item whose sets repeat members (as some SDKs' sample events do)
    rec = insert({"Id": 1}, 1001)
    rec["dynamodb"]["NewImage"].update(DUPLICATES)
    # WHEN it is applied
    assert database.process([rec]).response() == {"batchItemFailures": []}
    # THEN each set holds each member once, sorted as the README says
    (item, _), *_ = database.items("orders").values()
    assert {k: v for k, v in item.items() if k != "Id"} == {
        "ns": [1, 2, 10],
        "ss": ["a", "b"],
        "bs": ["/w==", "AA=="],
    }


def test_typed_set_columns_store_each_member_once(database: Database, tmp_path: Path) -> None:
    # GIVEN a mapping with numeric[] and text[] columns (JSON arrays on MySQL and SQLite)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[tables.Orders]\nkeys = ["Id"]\n[tables.Orders.columns]\nId = "bigint"\n'
        'ns = "numeric[]"\nss = "text[]"\nbs = "jsonb"\n',
        encoding="utf-8",
    )
    env = {
        "CDC_DATABASE_URL": database.engine.url.render_as_string(False),
        "CDC_CONFIG": str(mapping),
    }
    if database.schema:
        env["CDC_SCHEMA"] = database.schema
    settings = load_settings(env)
    rec = insert({"Id": 1}, 1001)
    rec["dynamodb"]["NewImage"].update(DUPLICATES)
    # WHEN it is applied
    result = database.replicator(settings).process(
        [rec], Deadline.from_context(FakeContext(30_000))
    )
    assert result.response() == {"batchItemFailures": []} and result.dead_lettered == 0
    # THEN the columns hold each member once
    table = database.table("orders")
    with database.engine.connect() as conn:
        row = conn.execute(select(table.c.ns, table.c.ss, table.c.bs)).one()
    ns, ss, bs = (v if isinstance(v, list) else loads(v) for v in row)
    assert [int(v) for v in ns] == [1, 2, 10]
    assert ss == ["a", "b"]
    assert bs == ["/w==", "AA=="]
