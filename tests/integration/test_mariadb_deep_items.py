"""Items nested as deep as DynamoDB allows are stored (issue 12, item 14).

DynamoDB nests maps and lists up to 32 levels below an attribute. MariaDB's JSON type is
LONGTEXT with CHECK (JSON_VALID(...)), and JSON_VALID refuses documents deeper than 32
levels, so such items were dead-lettered ("CONSTRAINT `t.item` failed"). cdc's JSON
columns on MariaDB are LONGTEXT without that check (cdc writes valid JSON itself).
Against a real PostgreSQL, MariaDB and SQLite, in document mode and in a typed `jsonb`
column: the item is replicated and reads back equal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, Text, cast, select

from cdc.config import load_settings
from cdc.jobs.replicate import Replicator
from tests.conftest import TestDatabase
from tests.factories import insert

pytestmark = pytest.mark.postgres

BASE = 10**20
LEVELS = 32  # DynamoDB's limit of nested attribute levels


def nested(levels: int) -> Any:
    """An attribute value of `levels` nested maps and lists (the innermost one a map)."""
    value: Any = {"leaf": "x", "n": 1}
    for level in range(levels - 1):
        value = {"m": value} if level % 2 else [value, level]
    return value


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def replicate_deep_items(engine: Engine, schema: str | None, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[tables.Typed]\nkeys = ["Id"]\n\n[tables.Typed.columns]\nId = "text"\nDoc = "jsonb"\n'
    )
    env = {
        "CDC_CONFIG": str(mapping),
        "CDC_DATABASE_URL": engine.url.render_as_string(hide_password=False),
    }
    if schema is not None:
        env["CDC_SCHEMA"] = schema
    replicator = Replicator(engine, load_settings(env))
    deep = nested(LEVELS)
    assert depth(deep) == LEVELS
    result = replicator.process(
        [
            insert({"Id": "deep"}, BASE, {"Doc": deep}, table="Docs"),
            insert({"Id": "deep"}, BASE + 1, {"Doc": deep}, table="Typed"),
        ]
    )
    assert result.dead_lettered == 0 and result.failed == 0, result.summary()
    with engine.connect() as conn:
        docs = Table("docs", MetaData(), autoload_with=engine, schema=schema)
        typed = Table("typed", MetaData(), autoload_with=engine, schema=schema)
        item = conn.execute(select(cast(docs.c.item, Text))).scalar_one()
        column = conn.execute(select(cast(typed.c.doc, Text))).scalar_one()
    assert json.loads(item) == {"Id": "deep", "Doc": deep}
    assert json.loads(column) == deep


def test_an_item_nested_32_levels_is_replicated(database: TestDatabase, tmp_path: Path) -> None:
    replicate_deep_items(database.engine, database.schema, tmp_path)
