"""Model-based: random histories of one DynamoDB table through stream lifecycles converge
to the source after `cdc repair` (README: Gaps and repair; docs/architecture.md,
section 3), on PostgreSQL, MariaDB/MySQL and SQLite.

A history is a list of steps against a model of the source table and its streams:

- `put` / `delete` change the source; while a stream is on, each change is a record of
  the current stream (sequence numbers increase within a stream, by random steps, and
  are unrelated across streams: a new stream often starts below the old one);
- `off` / `on` disable the stream and enable a new one (a new generation, its label a
  later timestamp): changes made in between are in no stream;
- `trim` loses the oldest undelivered records of the current stream, as the 24-hour
  retention does; the gap is recorded as `cdc tail` records it;
- `deliver` applies a random subset of the undelivered records, in random order (old
  streams' records included, late);
- `repair` runs `cdc repair` from a scan of the source, once the older streams are
  drained (the procedure's precondition, README: Gaps and repair).

At the end every record still held is delivered (in random order), the open gaps are
repaired, and the replica's live rows must equal the source, soft or hard deletes.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Text, cast, select

from cdc.aws.clients import SourceTable
from cdc.config import Settings
from cdc.core.gaps import TRIMMED, Gap
from cdc.core.mapping import TableOptions
from cdc.core.naming import snake
from cdc.core.versions import stream_generation
from cdc.jobs.repair import repair
from cdc.sql.gaps import open_gaps, record_gaps
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import ACCOUNT, REGION, record

KEYS = (1, 2, 3, 4)
FIRST_LABEL = datetime(2026, 11, 20, 8, tzinfo=UTC)
_tables = itertools.count(1)

steps = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(0, 99)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("deliver"), st.integers(1, 6), st.integers(0, 2**16)),
    st.tuples(st.just("off")),
    st.tuples(st.just("on"), st.integers(1, 10**6)),
    st.tuples(st.just("trim"), st.integers(1, 4)),
    st.tuples(st.just("repair")),
)


@dataclass
class Stream:
    label: str
    arn: str
    next_sequence: int


@dataclass
class Model:
    table: str
    source: dict[int, str] = field(default_factory=dict)
    streams: list[Stream] = field(default_factory=list)
    on: bool = True
    pending: list[tuple[int, int, dict[str, Any]]] = field(
        default_factory=list
    )  # (stream, seq, record)
    trims: int = 0

    def new_stream(self, start: int) -> None:
        moment = FIRST_LABEL + timedelta(hours=len(self.streams))
        label = moment.strftime("%Y-%m-%dT%H:%M:%S.000")
        arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.table}/stream/{label}"
        self.streams.append(Stream(label, arn, start))
        self.on = True

    def change(self, event: str, key: int, value: str | None, rng: random.Random) -> None:
        if not self.on:
            return
        index = len(self.streams) - 1
        stream = self.streams[index]
        stream.next_sequence += rng.randint(1, 1000)
        new = None if value is None else {"id": key, "v": value}
        rec = record(
            event, {"id": key}, stream.next_sequence, new=new, table=self.table, event_time=None
        )
        rec["eventSourceARN"] = stream.arn
        self.pending.append((index, stream.next_sequence, rec))


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def live(database: Database, name: str) -> dict[int, str]:
    from sqlalchemy import inspect

    if not inspect(database.engine).has_table(name, schema=database.schema):
        return {}
    t = database.table(name)
    with database.engine.connect() as conn:
        query = select(t.c.id, cast(t.c.item, Text)).where(t.c._cdc_deleted.is_(False))
        return {int(k): json.loads(item)["v"] for k, item in conn.execute(query)}


class Runner:
    def __init__(self, database: Database, deletes: str, seed: int) -> None:
        self.database = database
        self.model = Model(f"Model{next(_tables)}")
        self.rng = random.Random(seed)
        self.settings = Settings(
            database_url=database.engine.url,
            schema=database.schema,
            defaults=TableOptions(deletes=deletes),  # type: ignore[arg-type]
        )
        self.replicator = database.replicator(self.settings)
        # The table's first stream, and one record of it applied: cdc follows the table.
        self.model.new_stream(10**20)
        self.put(1, "start")
        self.deliver_all()

    def put(self, key: int, value: str) -> None:
        event = "MODIFY" if key in self.model.source else "INSERT"
        self.model.source[key] = value
        self.model.change(event, key, value, self.rng)

    def delete(self, key: int) -> None:
        if key in self.model.source:
            del self.model.source[key]
            self.model.change("REMOVE", key, None, self.rng)

    def deliver(self, records: list[dict[str, Any]]) -> None:
        if records:
            result = self.replicator.process(records)
            assert not result.failed, result.error
            assert not result.dead_lettered

    def deliver_some(self, count: int, seed: int) -> None:
        rng = random.Random(seed)
        chosen = rng.sample(range(len(self.model.pending)), min(count, len(self.model.pending)))
        batch = [self.model.pending[i][2] for i in chosen]
        self.model.pending = [p for i, p in enumerate(self.model.pending) if i not in chosen]
        self.deliver(batch)

    def deliver_all(self, only_before: int | None = None) -> None:
        due = [p for p in self.model.pending if only_before is None or p[0] < only_before]
        self.model.pending = [p for p in self.model.pending if p not in due]
        self.rng.shuffle(due)
        for start in range(0, len(due), 5):
            self.deliver([p[2] for p in due[start : start + 5]])

    def trim(self, count: int) -> None:
        current = len(self.model.streams) - 1
        mine = sorted((p for p in self.model.pending if p[0] == current), key=lambda p: p[1])
        lost = mine[:count]
        if not lost:
            return
        self.model.pending = [p for p in self.model.pending if p not in lost]
        self.model.trims += 1
        stream = self.model.streams[current]
        gap = Gap(
            self.model.table,
            stream.arn,
            TRIMMED,
            stream_generation(stream.arn),
            shard_id="shardId-1",
            detail=f"trim {self.model.trims}",
        )
        with self.database.engine.begin() as conn:
            record_gaps(
                conn, self.replicator.backend, self.database.schema, [gap], datetime.now(UTC)
            )

    def repair(self) -> None:
        with self.database.engine.connect() as conn:
            if not open_gaps(conn, self.database.schema, self.model.table):
                return
        self.deliver_all(only_before=len(self.model.streams) - 1)  # older streams drained
        source = SourceTable(
            self.model.table,
            f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.model.table}",
            (("id", "N"),),
            None,
            self.model.streams[-1].arn,
        )
        items = [{"id": {"N": str(k)}, "v": {"S": v}} for k, v in sorted(self.model.source.items())]
        repair(self.database.engine, self.settings, source, [items[:2], items[2:]])
        self.replicator = self.database.replicator(self.settings)  # a new process

    def step(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "put":
            self.put(step[1], f"v{step[2]}")
        elif kind == "delete":
            self.delete(step[1])
        elif kind == "deliver":
            self.deliver_some(step[1], step[2])
        elif kind == "off":
            self.model.on = False
        elif kind == "on":
            self.model.new_stream(step[1])  # often below the old stream's numbers
        elif kind == "trim":
            self.trim(step[1])
        elif kind == "repair":
            self.repair()

    def finish(self) -> None:
        # A new stream is noticed with its first record (README: Gaps and repair): the
        # table is written once more, in a stream that is on.
        if not self.model.on:
            self.model.new_stream(1)
        self.put(KEYS[0], "end")
        self.deliver_all()
        self.repair()
        with self.database.engine.connect() as conn:
            assert open_gaps(conn, self.database.schema, self.model.table) == []
        assert live(self.database, snake(self.model.table)) == self.model.source


@pytest.mark.parametrize("deletes", ["soft", "hard"])
def test_histories_with_gaps_converge_after_repair(database, deletes):
    @settings(
        max_examples=20 if database.name == "sqlite" else 12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=False,
    )
    @given(history=st.lists(steps, min_size=1, max_size=25), seed=st.integers(0, 2**16))
    def run(history: list[tuple[Any, ...]], seed: int) -> None:
        runner = Runner(database, deletes, seed)
        for step in history:
            runner.step(step)
        runner.finish()

    run()
