"""A REMOVE without an OldImage (a KEYS_ONLY stream, or a producer that leaves it out)
of a key the replica has never seen, on a typed table with a `required` column: the
row that would remember the delete cannot be inserted without that column. Whatever
the database, that is one record's problem, never a batch that fails forever."""

from __future__ import annotations

from pathlib import Path

from cdc.config import load_settings
from cdc.jobs.replicate import Replicator
from tests.conftest import TestDatabase
from tests.factories import insert, record

MAPPING = """
[tables.People]
keys = ["Id"]
[tables.People.columns]
Id = "bigint"
Name = { type = "text", required = true }
"""


def test_an_imageless_remove_of_an_unseen_key_never_stalls_the_batch(
    db: TestDatabase, tmp_path: Path
) -> None:
    # GIVEN a typed table with a required column
    config = tmp_path / "mapping.toml"
    config.write_text(MAPPING)
    settings = load_settings(
        {
            "CDC_CONFIG": str(config),
            "CDC_DATABASE_URL": db.engine.url.render_as_string(False),
            "CDC_SCHEMA": db.schema,
        }
    )
    replicator = Replicator(db.engine, settings)

    # WHEN a batch holds an image-less REMOVE of a key never seen, and a good INSERT
    gone = record("REMOVE", {"Id": 1}, 10, table="People")
    good = insert({"Id": 2}, 11, {"Name": "Ada"}, table="People")
    result = replicator.process([gone, good])

    # THEN the good record is applied and the REMOVE is handled, not reported
    assert result.failed == 0, result.error
    rows = {r["id"]: r for r in db.rows("people")}
    assert rows[2]["name"] == "Ada"
