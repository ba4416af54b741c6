"""executemany parameters (cdc/sql/backends/bound.py `BoundUpsert.parameters`), as
SQLite takes them: one tuple per row, the repeating columns (deleted, event time) bound
once per distinct value. What is stored is what SQLAlchemy's multi-row VALUES statement
stores, for a batch whose event times repeat, differ, are missing and come in several
units, in typed and document mode, soft deletes included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table

from cdc.config import load_settings, parse_database_url
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.factories import record
from tests.integration.test_perf_bulk import MAPPING, Reference, attributes, stored

BASE = 10**20
# Seconds, repeated and not; milliseconds and microseconds (other producers); none.
EVENT_TIMES: list[float | None] = [
    1_700_000_000,
    1_700_000_000,
    1_700_000_001,
    None,
    1_700_000_000_250,
    1_700_000_001,
    1_700_000_000_500_000,
    None,
    1_700_000_002.5,
]


def _put(i: int, seq: int, event_time: float | None) -> dict[str, Any]:
    rec = record(
        "INSERT" if seq < 100 else "MODIFY",
        {"Id": f"k{i}"},
        BASE + seq,
        new={"Id": f"k{i}"},
        table="Things",
        event_time=event_time,
    )
    rec["dynamodb"]["NewImage"].update(attributes(i))
    return rec


def _remove(i: int, seq: int, event_time: float | None, typed: bool) -> dict[str, Any]:
    rec = record("REMOVE", {"Id": f"k{i}"}, BASE + seq, table="Things", event_time=event_time)
    if typed:  # a typed table's required column needs the old image
        rec["dynamodb"]["OldImage"] = {"Id": {"S": f"k{i}"}, **attributes(i)}
    return rec


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "document"])
def test_rows_with_repeating_and_distinct_event_times_are_stored_exactly(
    tmp_path: Path, typed: bool
) -> None:
    url = f"sqlite:///{tmp_path}/replica.db"
    env = {"CDC_DATABASE_URL": url}
    if typed:
        config = tmp_path / "mapping.toml"
        config.write_text(MAPPING, encoding="utf-8")
        env["CDC_CONFIG"] = str(config)
    engine = make_engine(parse_database_url(url, "test"))
    try:
        replicator = Replicator(engine, load_settings(env))
        reference = Reference(replicator)
        # GIVEN inserts, then updates and deletes, their event times repeating or not
        first = [_put(i, 10 + i, t) for i, t in enumerate(EVENT_TIMES)]
        second = [
            *(_put(i, 100 + i, EVENT_TIMES[-1 - i]) for i in range(0, len(EVENT_TIMES), 2)),
            *(_remove(i, 200 + i, EVENT_TIMES[i], typed) for i in range(1, len(EVENT_TIMES), 2)),
        ]
        for records in (first, second):
            # WHEN each batch is applied
            result = replicator.process(records)
            # THEN every record is applied
            assert (result.applied, result.failed, result.dead_lettered) == (len(records), 0, 0)
        # AND the replica holds, byte for byte, what the multi-row statement stored
        [copy] = reference.copies.values()
        replica = Table(copy.name.removesuffix("_before"), MetaData(), schema=copy.schema)
        before, after = stored(engine, copy), stored(engine, replica)
        assert len(after) == len(EVENT_TIMES)
        assert after == before
        # AND the event times and deleted flags were not merged into one value
        names = [c.name for c in copy.columns]
        times = {row[names.index("_cdc_event_time")] for row in after}
        deleted = {row[names.index("_cdc_deleted")] for row in after}
        assert len(times) >= 5
        assert None in times
        assert len(deleted) == 2
    finally:
        engine.dispose()
