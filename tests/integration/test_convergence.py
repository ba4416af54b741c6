"""Property: any delivery of a stream converges to the source's final state
(docs/architecture.md §3).

Random INSERT/MODIFY/REMOVE histories over a few keys of two tables (a single N key and
a composite S+N key), with rich item values, are delivered in random batches: shuffled,
with duplicates and a full replay. Afterwards every key's replica row must be the
record with the highest sequence number: the item equal to the last NewImage in the
contract's plain-JSON form (README: Replica tables; computed here independently of
`cdc.core.decode`),
`_cdc_seq` that sequence number, `_cdc_deleted` true iff the last event was a REMOVE.

The handler property runs on every database of the `db` fixture (PostgreSQL and
MariaDB/MySQL), the Replicator property on SQLite. Every example writes to replica
tables of its own (source tables renamed
`Orders-<random>`, `UserEvents-<random>`) in a schema of the test's own, and the Lambda
container is cold for each example (`cdc.handler.reset()`).

Sequence numbers always cross the 21 → 22 digit boundary, and at least one key has
events on both sides of it when any key has two events, so an implementation that
compares sequence numbers as text fails (the replay of the older record would win).
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, Table, Text, cast, create_engine, inspect, select, text
from sqlalchemy.engine import URL

import cdc.handler
from cdc.config import Settings, parse_database_url
from cdc.core.jsontext import loads
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.conftest import TestDatabase
from tests.factories import FakeContext, stream_arn

BOUNDARY = 10**21  # the first 22-digit sequence number
EPOCH = 1_700_000_000

# --- the two source tables --------------------------------------------------------------


@dataclass(frozen=True)
class SourceTable:
    name: str  # DynamoDB table name
    replica: str  # snake(name), README: Replica tables
    key_attrs: tuple[tuple[str, str, str], ...]  # (attribute, descriptor, column)
    keys: tuple[tuple[Any, ...], ...]  # the key values histories draw from


ORDERS = SourceTable(
    "Orders",
    "orders",
    (("Id", "N", "id"),),
    (
        (Decimal("1"),),
        (Decimal("-2.5"),),
        # Differ only in the 38th digit: a float key would merge them.
        (Decimal("12345678901234567890123456789012345678"),),
        (Decimal("12345678901234567890123456789012345679"),),
        (Decimal("1E-100"),),
    ),
)
USER_EVENTS = SourceTable(
    "UserEvents",
    "user_events",
    (("PK", "S", "pk"), ("SK", "N", "sk")),
    (
        ("user#1", Decimal("1")),
        ("user#1", Decimal("2")),
        ("User#1", Decimal("1")),  # keys are case-sensitive
        ("ümlaut ✓", Decimal("0.001")),
    ),
)
TABLES = (ORDERS, USER_EVENTS)


def key_image(table: SourceTable, key: tuple[Any, ...]) -> dict[str, Any]:
    image = {}
    for (attr, tag, _column), value in zip(table.key_attrs, key, strict=True):
        image[attr] = {tag: str(value)}
    return image


# --- strategies: DynamoDB AttributeValues -------------------------------------------------

SPECIAL_NUMBERS = (
    "0",
    "1E-130",
    "-1E-130",
    "9.9999999999999999999999999999999999999E+125",
    "-9.9999999999999999999999999999999999999E+125",
    "99999999999999999999999999999999999999",  # 38 nines
    "1.0000000000000000000000000000000000001",  # 38 digits: float would say 1.0
    "0.1",
    "-123.4500",
    "1E+2",
    "100",
    "3.1415926535897932384626433832795028841",
)


@st.composite
def number_text(draw: st.DrawFn) -> str:
    """Exact DynamoDB numbers: up to 38 significant digits, 1E-120 … 9.99E+125."""
    if draw(st.booleans()):
        return draw(st.sampled_from(SPECIAL_NUMBERS))
    digits = draw(st.integers(1, 38))
    coefficient = draw(st.integers(10 ** (digits - 1), 10**digits - 1))
    adjusted = draw(st.integers(-120, 125))
    negative = draw(st.booleans())
    value = Decimal(f"{'-' if negative else ''}{coefficient}E{adjusted - digits + 1}")
    plain = format(value, "f")  # plain digits, as DynamoDB usually sends them
    # ... unless that spells more than 38 digits (1E+38 as 39 digits), which DynamoDB
    # and boto3 reject: the exponent form then.
    if len(Decimal(plain).as_tuple().digits) <= 38 and draw(st.booleans()):
        return plain
    return str(value)


# No U+0000 (a separate policy decides about it) and no lone surrogates (not JSON).
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=8,
)
NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=6,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _distinct_numbers(texts: list[str]) -> list[str]:
    seen: set[Decimal] = set()
    out = []
    for t in texts:
        if Decimal(t) not in seen:
            seen.add(Decimal(t))
            out.append(t)
    return out


SCALARS = st.one_of(
    TEXT.map(lambda s: {"S": s}),
    number_text().map(lambda n: {"N": n}),
    st.binary(max_size=12).map(lambda b: {"B": b64(b)}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(TEXT, min_size=1, max_size=5, unique=True).map(lambda v: {"SS": v}),
    st.lists(number_text(), min_size=1, max_size=5).map(_distinct_numbers).map(lambda v: {"NS": v}),
    st.lists(st.binary(max_size=6), min_size=1, max_size=4, unique=True).map(
        lambda v: {"BS": [b64(b) for b in v]}
    ),
)

VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(NAMES, children, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=6,
)

ATTRIBUTES = st.dictionaries(
    st.one_of(st.sampled_from(["Message", "nested", "tags", "Total", "名前", "with space"]), NAMES),
    VALUES,
    max_size=4,
)


# --- histories ----------------------------------------------------------------------------


@dataclass
class Event:
    table: SourceTable
    key: tuple[Any, ...]
    name: str  # INSERT | MODIFY | REMOVE
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    seq: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    event_time: datetime | None = None


@dataclass
class History:
    events: list[Event]
    deliveries: list[list[dict[str, Any]]]  # the batches, in delivery order

    def batches(self, suffix: str) -> list[list[dict[str, Any]]]:
        """The deliveries, for source tables renamed `NAME-suffix` (fresh replica tables
        for every example, even when hypothesis runs an example again)."""
        renamed = {stream_arn(t.name): stream_arn(f"{t.name}-{suffix}") for t in TABLES}
        out = []
        for batch in self.deliveries:
            copies = [copy.deepcopy(r) for r in batch]  # duplicates become distinct objects
            for record in copies:
                record["eventSourceARN"] = renamed[record["eventSourceARN"]]
            out.append(copies)
        return out

    def final(self) -> dict[tuple[str, tuple[Any, ...]], Event]:
        last: dict[tuple[str, tuple[Any, ...]], Event] = {}
        for e in self.events:  # events are in sequence order
            last[(e.table.replica, e.key)] = e
        return last

    def last_new_image(self) -> dict[tuple[str, tuple[Any, ...]], dict[str, Any]]:
        images: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}
        for e in self.events:
            if e.new is not None:
                images[(e.table.replica, e.key)] = e.new
        return images


def make_record(e: Event, index: int) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": EPOCH + index,
        "Keys": key_image(e.table, e.key),
        "SequenceNumber": str(e.seq),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if e.new is not None:
        dynamodb["NewImage"] = e.new
    if e.old is not None:
        dynamodb["OldImage"] = e.old
    return {
        "eventID": f"{index:032x}",
        "eventName": e.name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-central-1",
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn(e.table.name),
    }


@st.composite
def histories(draw: st.DrawFn) -> History:
    # What DynamoDB would emit: INSERT when the item is absent, MODIFY or REMOVE when
    # present; OldImage is the item before the change (NEW_AND_OLD_IMAGES).
    current: dict[tuple[str, tuple[Any, ...]], dict[str, Any] | None] = {}
    events: list[Event] = []
    for _ in range(draw(st.integers(1, 24))):
        table = draw(st.sampled_from(TABLES))
        key = draw(st.sampled_from(table.keys))
        state = current.get((table.replica, key))
        attributes = {**draw(ATTRIBUTES), **key_image(table, key)}
        if state is None:
            events.append(Event(table, key, "INSERT", attributes, None))
            current[(table.replica, key)] = attributes
        elif draw(st.booleans()):
            events.append(Event(table, key, "MODIFY", attributes, state))
            current[(table.replica, key)] = attributes
        else:
            events.append(Event(table, key, "REMOVE", None, state))
            current[(table.replica, key)] = None

    # Sequence numbers: increasing, gaps of any size, crossing 10**21 at event `pivot`
    # (event pivot-1 has 21 digits, event pivot has 22). Prefer a pivot whose key also
    # has an earlier event, so the text order of that key's sequences is wrong.
    gaps = [draw(st.sampled_from([1, 2, 7, 10**6, 10**12])) for _ in events]
    offsets = [sum(gaps[: i + 1]) for i in range(len(events))]
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    crossing = []
    for i, e in enumerate(events):
        if i > 0 and (e.table.replica, e.key) in seen:
            crossing.append(i)
        seen.add((e.table.replica, e.key))
    pivot = draw(st.sampled_from(crossing or list(range(len(events)))))
    base = BOUNDARY - offsets[pivot]
    for i, e in enumerate(events):
        e.seq = base + offsets[i]
        e.record = make_record(e, i)
        e.event_time = datetime.fromtimestamp(EPOCH + i, tz=UTC)
    assert events[pivot].seq == BOUNDARY
    assert all(len(str(e.seq)) in (21, 22) for e in events)

    # Delivery: shuffled, some records duplicated, then a full replay (in order,
    # reversed or shuffled), cut into random batches.
    rng = draw(st.randoms(use_true_random=False))
    stream = [e.record for e in events]
    stream += [
        events[i].record for i in draw(st.lists(st.integers(0, len(events) - 1), max_size=8))
    ]
    rng.shuffle(stream)
    replay = [e.record for e in events]
    mode = draw(st.sampled_from(["in order", "reversed", "shuffled"]))
    if mode == "reversed":
        replay.reverse()
    elif mode == "shuffled":
        rng.shuffle(replay)
    stream += replay
    batches: list[list[dict[str, Any]]] = []
    position = 0
    while position < len(stream):
        size = draw(st.integers(1, 12))
        batches.append(stream[position : position + size])
        position += size
    return History(events, batches)


# --- the expected plain-JSON form, computed independently ---------------------------------

_deserializer = TypeDeserializer()


def expected_plain(image: dict[str, Any]) -> dict[str, Any]:
    """The plain JSON form (README: Replica tables) through boto3's TypeDeserializer:
    sets → sorted lists, bytes → base64."""
    return {
        name: _plain(_deserializer.deserialize(_wire_to_boto(av))) for name, av in image.items()
    }


def _wire_to_boto(av: dict[str, Any]) -> dict[str, Any]:
    """Stream JSON carries B/BS as base64 text; boto3's deserializer wants bytes (its
    client decodes base64 before the deserializer sees the value)."""
    ((tag, payload),) = av.items()
    if tag == "B":
        return {"B": base64.b64decode(payload)}
    if tag == "BS":
        return {"BS": [base64.b64decode(p) for p in payload]}
    if tag == "M":
        return {"M": {k: _wire_to_boto(v) for k, v in payload.items()}}
    if tag == "L":
        return {"L": [_wire_to_boto(v) for v in payload]}
    return av


def _plain(value: Any) -> Any:
    if isinstance(value, Binary):
        return b64(value.value)
    if isinstance(value, bytes):
        return b64(value)
    if isinstance(value, set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items)  # numbers numerically, strings and base64 text as text
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    assert value is None or isinstance(value, bool | str | Decimal), type(value)
    return value


def tagged(value: Any) -> Any:
    """Make == strict about JSON types (Python says True == Decimal(1))."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, Decimal):
        return ("number", value)  # numeric equality, exact: 1.50 == 1.5
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", [tagged(v) for v in value])
    if isinstance(value, dict):
        return ("object", {k: tagged(v) for k, v in value.items()})
    raise AssertionError(f"not a JSON value from loads(): {value!r} ({type(value).__name__})")


# --- checking a replica --------------------------------------------------------------------


@dataclass
class Row:
    item: Any
    seq: int
    deleted: bool
    event_time: datetime | None = None


def check_replica(history: History, rows: dict[tuple[str, tuple[Any, ...]], Row]) -> None:
    final = history.final()
    new_images = history.last_new_image()
    assert set(rows) == set(final), "replica keys differ from the source's keys"
    for where, last in final.items():
        row = rows[where]
        assert row.seq == last.seq, f"{where}: _cdc_seq {row.seq}, expected {last.seq}"
        assert row.deleted is (last.name == "REMOVE"), f"{where}: _cdc_deleted {row.deleted}"
        expected = expected_plain(new_images[where])
        if last.name == "REMOVE":  # the soft-deleted row keeps the item as it was
            assert last.old is not None
            assert tagged(expected_plain(last.old)) == tagged(expected)
        assert tagged(row.item) == tagged(expected), f"{where}: item differs"
        assert row.event_time == last.event_time, f"{where}: _cdc_event_time {row.event_time}"


def _time(value: Any) -> datetime | None:
    """timestamptz on Postgres; SQLAlchemy's DateTime text on SQLite (UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _number(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def read_rows(
    conn: Any, suffix: str, schema: str | None = None
) -> dict[tuple[str, tuple[Any, ...]], Row]:
    """The replica rows of one example, keyed like `History.final()`, read the same way
    on every dialect (SQLAlchemy Core, the item cast to text so numbers stay exact)."""
    rows = {}
    present = set(inspect(conn).get_table_names(schema=schema))
    for table in TABLES:
        replica = f"{table.replica}_{suffix}"  # snake("Orders-<suffix>")
        if replica not in present:  # the history never touched this table
            continue
        stored = Table(replica, MetaData(), autoload_with=conn, schema=schema)
        keys = [stored.c[c] for _a, _t, c in table.key_attrs]
        result = conn.execute(
            select(
                *keys,
                cast(stored.c.item, Text),
                stored.c._cdc_seq,
                stored.c._cdc_deleted,
                stored.c._cdc_event_time,
            )
        )
        width = len(table.key_attrs)
        for r in result:
            # An N key reads back as a number (Postgres numeric) or as its canonical
            # text (MySQL, SQLite): Decimal(str(x)) compares both exactly.
            key = tuple(
                _number(v) if tag == "N" else v
                for v, (_a, tag, _c) in zip(r[:width], table.key_attrs, strict=True)
            )
            item, seq, deleted, event_time = r[width:]
            assert isinstance(item, str)
            # A text _cdc_seq on SQLite is zero-padded; int() reads either form exactly.
            rows[(table.replica, key)] = Row(
                loads(item), sequence_of(int(seq)), bool(deleted), _time(event_time)
            )
    return rows


# --- environment helpers -----------------------------------------------------------------


def assert_handled(response: Any, batch: list[dict[str, Any]]) -> None:
    assert response == {"batchItemFailures": []}, (
        response,
        [r["dynamodb"]["SequenceNumber"] for r in batch],
    )


@pytest.fixture
def handler_env(monkeypatch: pytest.MonkeyPatch, db: TestDatabase) -> Iterator[TestDatabase]:
    """The Lambda's configuration: the database under test, a schema of this test's own."""
    for name in ("CDC_CONFIG", "CDC_DATABASE_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDC_DATABASE_URL", db.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDC_SCHEMA", db.schema)
    cdc.handler.reset()
    yield db
    cdc.handler.reset()


def deliver_to_handler(history: History, suffix: str) -> None:
    cdc.handler.reset()  # a cold container per example: the cached engine is rebuilt
    try:
        for batch in history.batches(suffix):
            assert_handled(cdc.handler.handler({"Records": batch}, FakeContext()), batch)
    finally:
        cdc.handler.reset()


def deliver_to_sqlite(history: History, suffix: str, url: URL) -> None:
    engine = make_engine(url)
    try:
        replicator = Replicator(engine, Settings(database_url=url))
        for batch in history.batches(suffix):
            result = replicator.process(batch)
            assert result.response() == {"batchItemFailures": []}, result.summary()
            assert result.dead_lettered == 0, result.summary()
    finally:
        engine.dispose()


def dead_letters(conn: Any, schema: str | None) -> list[Any]:
    letters = Table("cdc_dead_letters", MetaData(), autoload_with=conn, schema=schema)
    c = letters.c
    return conn.execute(select(c.source_table, c.error_class, c.error_message)).all()


CONVERGENCE = settings(
    max_examples=30,
    deadline=None,
    # The explain phase re-runs a failing example ~100 times against the database.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        # The schema / SQLite file is per test function on purpose: every example
        # writes to replica tables of its own (fresh names), see History.batches.
        HealthCheck.function_scoped_fixture,
    ],
)


# --- the properties ------------------------------------------------------------------------


# The exact type of `_cdc_seq` per dialect (docs/architecture.md §3: compared as integers).
SEQ_TYPES = {
    "postgresql": {("numeric", 65, 0)},  # versions: cdc/core/versions.py
    "mysql": {("decimal", 65, 0)},
}


@CONVERGENCE
@given(history=histories())
def test_handler_converges(history: History, handler_env: TestDatabase) -> None:
    db = handler_env
    suffix = uuid.uuid4().hex[:10]
    deliver_to_handler(history, suffix)
    with db.engine.connect() as conn:
        rows = read_rows(conn, suffix, db.schema)
        assert dead_letters(conn, db.schema) == []
        seq_types = conn.execute(
            text(
                "select data_type, numeric_precision, numeric_scale "
                "from information_schema.columns "
                "where table_schema = :s and column_name = '_cdc_seq' and table_name like :t"
            ),
            {"s": db.schema, "t": f"%{suffix}"},
        ).all()
    assert {(str(t).lower(), int(p), int(sc)) for t, p, sc in seq_types} == SEQ_TYPES[db.name]
    check_replica(history, rows)


@settings(CONVERGENCE, max_examples=50)  # SQLite is cheap: more histories
@given(history=histories())
def test_replicator_converges_on_sqlite(history: History, tmp_path: Path) -> None:
    url = parse_database_url(f"sqlite:///{tmp_path}/cdc.db", "test")
    suffix = uuid.uuid4().hex[:10]
    deliver_to_sqlite(history, suffix, url)
    check = create_engine(f"sqlite:///{tmp_path}/cdc.db")
    try:
        with check.connect() as conn:
            rows = read_rows(conn, suffix)
            assert dead_letters(conn, None) == []
    finally:
        check.dispose()
    check_replica(history, rows)


# --- the generator's promises and the boundary case on its own -----------------------------


@settings(max_examples=25, deadline=None, database=None)
@given(history=histories())
def test_histories_cross_the_digit_boundary(history: History) -> None:
    """21- and 22-digit sequence numbers for one key (text order is wrong for them), and
    every record delivered at least twice."""
    seqs = [e.seq for e in history.events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert BOUNDARY in seqs
    per_key: dict[tuple[str, tuple[Any, ...]], list[int]] = {}
    for e in history.events:
        per_key.setdefault((e.table.replica, e.key), []).append(e.seq)
    if any(len(v) > 1 for v in per_key.values()):
        assert any(
            min(v) < BOUNDARY <= max(v) and str(min(v)) > str(max(v)) for v in per_key.values()
        )
    delivered = [json.dumps(r, sort_keys=True) for b in history.batches("x") for r in b]
    for e in history.events:
        record = copy.deepcopy(e.record)
        record["eventSourceARN"] = stream_arn(f"{e.table.name}-x")
        assert delivered.count(json.dumps(record, sort_keys=True)) >= 2


def test_expected_plain_form_is_independent_and_exact() -> None:
    image = {
        "n": {"N": "1.0000000000000000000000000000000000001"},
        "big": {"N": "9.9999999999999999999999999999999999999E+125"},
        "tiny": {"N": "1E-130"},
        "b": {"B": b64(b"\x00\xff")},
        "ss": {"SS": ["b", "a"]},
        "ns": {"NS": ["10", "9", "-1.5"]},
        "bs": {"BS": [b64(b"\x02"), b64(b"\x01")]},
        "m": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": False}]}}},
    }
    plain = expected_plain(image)
    assert plain["n"] == Decimal("1.0000000000000000000000000000000000001")
    assert plain["n"] != Decimal(1)
    assert plain["big"] == Decimal("9.9999999999999999999999999999999999999E+125")
    assert plain["tiny"] == Decimal("1E-130")
    assert plain["ns"] == [Decimal("-1.5"), Decimal("9"), Decimal("10")]
    assert plain["ss"] == ["a", "b"]
    assert plain["bs"] == sorted([b64(b"\x01"), b64(b"\x02")])
    assert plain["b"] == "AP8="
    assert plain["m"] == {"l": [None, False]}
    assert tagged(True) != tagged(Decimal(1))
    assert tagged([Decimal("1.50")]) == tagged([Decimal("1.5")])


def boundary_history() -> History:
    """10**21 is newer than 10**21 - 1, though "1000…" < "9999…" as text."""
    key = (Decimal(1),)
    older = Event(ORDERS, key, "INSERT", {"Id": {"N": "1"}, "v": {"S": "old"}}, None, BOUNDARY - 1)
    newer = Event(ORDERS, key, "MODIFY", {"Id": {"N": "1"}, "v": {"S": "new"}}, older.new, BOUNDARY)
    for i, e in enumerate((older, newer)):
        e.record = make_record(e, i)
        e.event_time = datetime.fromtimestamp(EPOCH + i, tz=UTC)
    deliveries = [[newer.record], [older.record], [older.record, newer.record, older.record]]
    return History([older, newer], deliveries)


def test_boundary_through_the_handler(handler_env: TestDatabase) -> None:
    history = boundary_history()
    deliver_to_handler(history, "b")
    with handler_env.engine.connect() as conn:
        rows = read_rows(conn, "b", handler_env.schema)
    check_replica(history, rows)
    assert rows[("orders", (Decimal(1),))].item == {"Id": Decimal(1), "v": "new"}


def test_boundary_on_sqlite(tmp_path: Path) -> None:
    history = boundary_history()
    url = parse_database_url(f"sqlite:///{tmp_path}/cdc.db", "test")
    deliver_to_sqlite(history, "b", url)
    check = create_engine(f"sqlite:///{tmp_path}/cdc.db")
    try:
        with check.connect() as conn:
            rows = read_rows(conn, "b")
    finally:
        check.dispose()
    check_replica(history, rows)
    assert rows[("orders", (Decimal(1),))].item == {"Id": Decimal(1), "v": "new"}
