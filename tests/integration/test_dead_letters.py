"""Dead letters (README: Failure handling; docs/architecture.md §6), against a real
PostgreSQL and MariaDB/MySQL (the `db` fixture) where nothing PostgreSQL-specific is
involved, no mocks.

- a batch mixing good records with every malformed kind of §6 and hostile names: the
  good records are applied, each bad one is dead-lettered with its reason, no table is
  harmed, the handler does not raise, a replay adds no dead-letter rows;
- a row the database rejects inside a bulk write is isolated, every good row applied;
- a dead letter that cannot be written leaves its record reported, the good records
  committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    cast,
    inspect,
    select,
    text,
)
from sqlalchemy import event as sa_event
from sqlalchemy.schema import AddConstraint

from cdc import handler as lambda_handler
from cdc.config import Settings, load_settings
from cdc.core.deadline import Deadline
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from tests.conftest import TestDatabase
from tests.factories import (
    FakeContext,
    event,
    insert,
    modify,
    record,
    remove,
    stream_arn,
)

pytestmark = pytest.mark.postgres

BASE = 10**20  # sequence numbers are 21-40 digit decimal strings
NO_FAILURES = {"batchItemFailures": []}


# --- helpers -------------------------------------------------------------------------


def _table(engine: Engine, schema: str, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=engine, schema=schema)


def dead_letters(engine: Engine, schema: str) -> list[dict[str, Any]]:
    t = _table(engine, schema, "cdc_dead_letters")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t).order_by(t.c.id)).mappings()]


def letter_for(letters: list[dict[str, Any]], rec: Any) -> dict[str, Any]:
    """The one dead letter whose raw record is `rec`, exactly as delivered."""
    found = [d for d in letters if json.loads(d["raw_record"]) == rec]
    assert len(found) == 1, f"{len(found)} dead letters for {rec!r}"
    return found[0]


def replica(engine: Engine, schema: str, table: str, key: str = "id") -> dict[str, Any]:
    """{key as text: (_cdc_seq, _cdc_deleted, item)}, read the same way on every dialect
    (an N key is canonical text on MySQL, the item is read as text: exact numbers)."""
    t = _table(engine, schema, table)
    query = select(cast(t.c[key], Text), t.c._cdc_seq, t.c._cdc_deleted, cast(t.c.item, Text))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {
        r[0]: (sequence_of(int(r[1])), bool(r[2]), None if r[3] is None else json.loads(r[3]))
        for r in rows
    }


def seq_of(rec: dict[str, Any]) -> str:
    return str(rec["dynamodb"]["SequenceNumber"])


def deadline() -> Deadline:
    return Deadline.from_context(FakeContext(30_000))


def settings_from_toml(engine: Engine, schema: str, path: Path, toml: str) -> Settings:
    """Settings as the service reads them: environment plus a CDC_CONFIG file."""
    path.write_text(toml, encoding="utf-8")
    url = engine.url.render_as_string(hide_password=False)
    return load_settings({"CDC_DATABASE_URL": url, "CDC_SCHEMA": schema, "CDC_CONFIG": str(path)})


def ensure_bookkeeping(engine: Engine, schema: str) -> None:
    """Let cdc create its bookkeeping tables, as on its first batch."""
    settings = Settings(database_url=engine.url, schema=schema)
    assert Replicator(engine, settings).process([], deadline()).failed == 0


@pytest.fixture
def fresh_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Engine, str], None]]:
    """Point the Lambda handler at the test's schema, as its environment would."""

    def configure(engine: Engine, schema: str) -> None:
        monkeypatch.setenv("CDC_DATABASE_URL", engine.url.render_as_string(hide_password=False))
        monkeypatch.setenv("CDC_SCHEMA", schema)
        monkeypatch.delenv("CDC_CONFIG", raising=False)
        lambda_handler.reset()

    yield configure
    lambda_handler.reset()


# --- 4. every malformed kind and hostile names in one batch ---------------------------

NASTY_ATTR = 'a"; DROP TABLE t; --'
NASTY_KEY_ATTR = "k'\"; DROP TABLE t; --"
NASTY_VALUE = "'); DROP TABLE orders; --"
NASTY_TABLE = "x.y-z_"  # allowed by DynamoDB's [A-Za-z0-9_.-]{3,255}; snake: x_y_z


def bad(seq: int, **changes: Any) -> dict[str, Any]:
    """A well-formed Orders INSERT, then broken as `changes` say (None deletes a key;
    keys with a dot reach into `dynamodb`)."""
    rec = insert({"Id": 500 + seq}, BASE + 5000 + seq, {"v": 1})
    for path, value in changes.items():
        target, name = (rec["dynamodb"], path[9:]) if path.startswith("dynamodb_") else (rec, path)
        if value is None:
            del target[name]
        else:
            target[name] = value
    return rec


def with_new_image(seq: int, **attributes: Any) -> dict[str, Any]:
    rec = insert({"Id": 500 + seq}, BASE + 5000 + seq)
    rec["dynamodb"]["NewImage"].update(attributes)
    return rec


def malformed_cases() -> list[tuple[str, Any, str, str]]:
    """(what, record, error_class, a fragment its error message must hold)."""
    bad_arn_table = "Robert');DROP TABLE orders;--"
    key_with_quote = record("INSERT", {'Id"': 1}, BASE + 5100, new={"x": 1})
    return [
        ("wrong eventSource", bad(1, eventSource="aws:kinesis"), "malformed", "eventSource"),
        ("unknown eventName", bad(2, eventName="UPSERT"), "malformed", "UPSERT"),
        (
            "missing SequenceNumber",
            bad(3, dynamodb_SequenceNumber=None),
            "malformed",
            "SequenceNumber",
        ),
        ("non-numeric SequenceNumber", bad(4, dynamodb_SequenceNumber="12ab"), "malformed", "12ab"),
        ("missing Keys", bad(5, dynamodb_Keys=None), "malformed", "Keys"),
        ("no dynamodb object", bad(6, dynamodb=None), "malformed", "dynamodb"),
        (
            "not a stream ARN",
            bad(7, eventSourceARN="arn:aws:s3:::my-bucket"),
            "malformed",
            "not a DynamoDB stream ARN",
        ),
        (
            "table name DynamoDB forbids",
            bad(8, eventSourceARN=stream_arn(bad_arn_table)),
            "malformed",
            "would not allow",
        ),
        (
            "unknown type descriptor",
            with_new_image(9, x={"Q": "1"}),
            "decode",
            "unknown type descriptor",
        ),
        (
            "BOOL of the wrong shape",
            with_new_image(10, flag={"BOOL": "yes"}),
            "decode",
            "NewImage.flag",
        ),
        ("N that is not a number", with_new_image(11, n={"N": "12abc"}), "decode", "12abc"),
        ("bad base64", with_new_image(12, blob={"B": "not base64!"}), "decode", "base64"),
        (
            "key of a type keys cannot have",
            bad(13, dynamodb_Keys={"Id": {"BOOL": True}}),
            "decode",
            "Keys.Id",
        ),
        (
            "key N that is not a number",
            bad(14, dynamodb_Keys={"Id": {"N": "1; DROP"}}),
            "decode",
            "Keys.Id",
        ),
        ("U+0000 in a string", with_new_image(15, note={"S": "a\x00b"}), "nul", "NewImage.note"),
        ("a key attribute with a quote", key_with_quote, "key_mismatch", "Id"),
        (
            "a table name that snakes onto another",
            insert({"Id": 1}, BASE + 5200, table="orders--"),
            "name_collision",
            "orders--",
        ),
        ("a string record", "not a record", "malformed", "str"),
        ("a number record", 42, "malformed", "int"),
        ("a null record", None, "malformed", "NoneType"),
        ("a list record", ["INSERT"], "malformed", "list"),
    ]


def test_malformed_and_hostile_records_are_dead_lettered_and_the_rest_applied(
    db: TestDatabase, fresh_handler: Callable[[Engine, str], None]
) -> None:
    pg_engine, pg_schema = db.engine, db.schema
    # GIVEN a replica with Orders and Customers rows, and a bystander table `t` that the
    # hostile names aim at
    fresh_handler(pg_engine, pg_schema)
    setup = [insert({"Id": i}, BASE + i, {"v": i}) for i in (1, 2, 3)]
    setup.append(insert({"Id": 1}, BASE + 1, {"name": "c1"}, table="Customers"))
    assert lambda_handler.handler(event(*setup), FakeContext(30_000)) == NO_FAILURES
    bystander = Table("t", MetaData(), Column("x", Integer), schema=pg_schema)
    with pg_engine.begin() as conn:
        bystander.create(conn)
        conn.execute(bystander.insert().values(x=42))

    # AND a batch mixing good records (some with hostile attribute and table names) with
    # every malformed kind (README: Failure handling)
    good = [
        modify({"Id": 1}, BASE + 101, {"note": NASTY_VALUE, NASTY_ATTR: NASTY_VALUE}),
        modify({"Id": 2}, BASE + 102, {"v": 22}),
        remove({"Id": 3}, BASE + 103),
        insert({NASTY_KEY_ATTR: NASTY_VALUE}, BASE + 104, {NASTY_ATTR: 1}, table=NASTY_TABLE),
        insert({"Id": 9}, BASE + 105, {"v": 9}),
    ]
    cases = malformed_cases()
    batch: list[Any] = []
    for i, (_, rec, _, _) in enumerate(cases):
        batch.append(rec)
        if i < len(good):
            batch.append(good[i])

    # WHEN Lambda delivers it
    response = lambda_handler.handler(event(*batch), FakeContext(30_000))

    # THEN nothing raised and nothing is reported: every record was handled
    assert response == NO_FAILURES
    # AND each bad record has one dead letter: raw record as delivered, its reason
    letters = dead_letters(pg_engine, pg_schema)
    assert len(letters) == len(cases)
    for what, rec, error_class, fragment in cases:
        letter = letter_for(letters, rec)
        assert letter["error_class"] == error_class, what
        assert fragment in letter["error_message"], (what, letter["error_message"])
        assert letter["status"] == "pending", what
        assert letter["attempts"] == 1, what
        assert letter["first_failed_at"] is not None, what
        assert letter["resolved_at"] is None, what
        if isinstance(rec, dict) and error_class in ("decode", "nul") and "Keys" not in fragment:
            # a parsed record: table, keys, sequence and stream are all filled in
            assert letter["sequence_number"] == seq_of(rec), what
            assert letter["stream_arn"] == rec["eventSourceARN"], what
            assert letter["source_table"] == "Orders", what
            assert json.loads(letter["keys"]) == {"Id": int(rec["dynamodb"]["Keys"]["Id"]["N"])}
    # AND the good records were applied, hostile names stored as data, not run as SQL
    orders = replica(pg_engine, pg_schema, "orders")
    assert orders["1"] == (
        BASE + 101,
        False,
        {"Id": 1, "note": NASTY_VALUE, NASTY_ATTR: NASTY_VALUE},
    )
    assert orders["2"][:2] == (BASE + 102, False)
    assert orders["3"][:2] == (BASE + 103, True)
    assert orders["9"][:2] == (BASE + 105, False)
    assert set(orders) == {"1", "2", "3", "9"}
    nasty = replica(pg_engine, pg_schema, "x_y_z", key="k_drop_table_t")
    assert nasty == {NASTY_VALUE: (BASE + 104, False, {NASTY_KEY_ATTR: NASTY_VALUE, NASTY_ATTR: 1})}
    # AND no table was harmed, and none was made from a name DynamoDB forbids
    with pg_engine.connect() as conn:
        assert conn.execute(select(bystander.c.x)).scalars().all() == [42]
        names = set(inspect(conn).get_table_names(schema=pg_schema))
    replicas = {n for n in names if not n.startswith(("cdc_", "alembic"))}
    assert replicas == {"orders", "customers", "x_y_z", "t"}
    assert replica(pg_engine, pg_schema, "customers") == {
        "1": (BASE + 1, False, {"Id": 1, "name": "c1"})
    }

    # WHEN the same batch is delivered again (Lambda replays it)
    response = lambda_handler.handler(event(*batch), FakeContext(30_000))

    # THEN no dead-letter row is added: each one counts a second attempt
    assert response == NO_FAILURES
    again = dead_letters(pg_engine, pg_schema)
    assert [d["id"] for d in again] == [d["id"] for d in letters]
    assert {d["attempts"] for d in again} == {2}
    assert all(
        a["first_failed_at"] == b["first_failed_at"] and a["last_failed_at"] >= b["last_failed_at"]
        for a, b in zip(again, letters, strict=True)
    )
    assert replica(pg_engine, pg_schema, "orders") == orders


def test_same_bad_record_twice_in_a_batch_is_one_dead_letter(db: TestDatabase) -> None:
    replicator, pg_engine, pg_schema = db.replicator(), db.engine, db.schema
    # GIVEN a batch carrying the same malformed record twice, and a good one
    rec = with_new_image(1, flag={"BOOL": "yes"})
    # WHEN it is processed
    result = replicator.process([rec, insert({"Id": 1}, BASE + 1), rec], deadline())
    # THEN one dead letter holds it, the good record is applied, nothing reported
    assert result.response() == NO_FAILURES
    assert [d["sequence_number"] for d in dead_letters(pg_engine, pg_schema)] == [seq_of(rec)]
    assert set(replica(pg_engine, pg_schema, "orders")) == {"1"}


def test_table_names_that_snake_onto_an_existing_table_never_merge_across_containers(
    db: TestDatabase,
) -> None:
    pg_engine, pg_settings, pg_schema = db.engine, db.settings, db.schema
    # GIVEN a replica table `orders` made by one container from the source table Orders
    first = Replicator(pg_engine, pg_settings)
    assert first.process([insert({"Id": 1}, BASE + 1, {"who": "Orders"})], deadline()).failed == 0

    # WHEN another container (its own, empty, name registry) first sees records of a
    # source table `orders--`, which also snakes onto `orders`
    second = Replicator(pg_engine, pg_settings)
    intruder = insert({"Id": 1}, BASE + 2, {"who": "orders--"}, table="orders--")
    result = second.process([intruder], deadline())

    # THEN Orders' row is untouched (docs/architecture.md §6: never a merge) and the record is
    # dead-lettered as a name collision, or reported
    assert replica(pg_engine, pg_schema, "orders")["1"] == (
        BASE + 1,
        False,
        {"Id": 1, "who": "Orders"},
    )
    if result.failed == 0:
        (letter,) = dead_letters(pg_engine, pg_schema)
        assert letter["error_class"] == "name_collision"
        assert "orders--" in letter["error_message"]


# --- 5. a row the database rejects inside a bulk write --------------------------------


# How each driver names a CHECK violation in the dead letter's error_class (pymysql
# raises MariaDB's 4025 / MySQL's 3819 as OperationalError; cdc.sql.errors still knows
# them as data errors, so the row is isolated and dead-lettered, not retried).
CHECK_VIOLATION = {"postgresql": "CheckViolation", "mysql": "pymysql.err.OperationalError"}
SETUP_ID = 1000  # the row that made cdc create `orders`


def create_checked_orders(db: TestDatabase) -> None:
    """The replica table as document mode makes it (cdc creates it, on the row SETUP_ID),
    plus CHECK constraints the data can break: the database, not cdc, rejects those rows.
    The constraints are SQLAlchemy DDL, so they read the same on every dialect (an N key
    is numeric on Postgres and canonical text on MySQL: both compare to 13 as numbers)."""
    setup = db.replicator().process([insert({"Id": SETUP_ID}, BASE + SETUP_ID)], deadline())
    assert setup.response() == NO_FAILURES and setup.dead_lettered == 0
    orders = _table(db.engine, db.schema, "orders")
    unlucky = CheckConstraint("id not in (13, 42)", name="id_is_not_unlucky", table=orders)
    poison = CheckConstraint(
        ~cast(orders.c.item, Text).contains('"poison"'), name="item_has_no_poison", table=orders
    )
    with db.engine.begin() as conn:
        conn.execute(AddConstraint(unlucky))
        conn.execute(AddConstraint(poison))


def test_rows_the_database_rejects_are_isolated_and_every_good_row_applied(
    db: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_engine, pg_schema = db.engine, db.schema
    # GIVEN a replica table whose CHECK constraints reject ids 13 and 42 and any item
    # with a `poison` attribute
    create_checked_orders(db)
    replicator = db.replicator()
    statements: list[str] = []

    @sa_event.listens_for(pg_engine, "before_cursor_execute")
    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.startswith(f"INSERT INTO {pg_schema}.orders "):
            statements.append(statement)

    # (the Postgres path sends its upserts to psycopg directly, in pipeline mode)
    execute = psycopg.Cursor.execute

    def counted(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str) and query.startswith(f"INSERT INTO {pg_schema}.orders "):
            statements.append(query)
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)

    # AND a batch of 64 Orders records (some modified within the batch) and Customers,
    # with three rows the database will reject scattered in it
    records = [insert({"Id": i}, BASE + i, {"v": i}) for i in range(60)]
    records += [modify({"Id": i}, BASE + 100 + i, {"v": 100 + i}) for i in range(0, 60, 15)]
    records += [insert({"Id": i}, BASE + 200 + i, {"c": i}, table="Customers") for i in range(5)]
    rejected = [(records[13], "id_is_not_unlucky"), (records[42], "id_is_not_unlucky")]
    poisoned = insert({"Id": 77}, BASE + 77, {"poison": True})
    records.insert(30, poisoned)
    try:
        # WHEN the batch is processed
        result = replicator.process(records, deadline())
    finally:
        sa_event.remove(pg_engine, "before_cursor_execute", count)

    # THEN nothing is reported
    assert result.response() == NO_FAILURES
    # AND the three rejected rows are dead letters saying which constraint refused them
    letters = {d["sequence_number"]: d for d in dead_letters(pg_engine, pg_schema)}
    expected = {seq_of(r): c for r, c in rejected} | {seq_of(poisoned): "item_has_no_poison"}
    assert set(letters) == set(expected)
    for seq, constraint in expected.items():
        assert CHECK_VIOLATION[db.name] in letters[seq]["error_class"]
        assert constraint in letters[seq]["error_message"]
        assert letters[seq]["target_table"] == f"{pg_schema}.orders"
    # AND every good row of the batch is applied, at its highest sequence
    orders = replica(pg_engine, pg_schema, "orders")
    want = {str(i): BASE + (100 + i if i % 15 == 0 else i) for i in range(60) if i not in (13, 42)}
    want[str(SETUP_ID)] = BASE + SETUP_ID
    assert {k: s for k, (s, _, _) in orders.items()} == want
    assert len(replica(pg_engine, pg_schema, "customers")) == 5
    # AND it was found by bisection, not one statement per row
    assert 1 < len(statements) < 40


@pytest.mark.parametrize(
    "where",
    ["item attribute", "key of an INSERT", "key of a REMOVE without image"],
)
def test_a_value_the_driver_cannot_encode_is_dead_lettered(db: TestDatabase, where: str) -> None:
    replicator, pg_engine, pg_schema = db.replicator(), db.engine, db.schema
    # GIVEN a batch of good REMOVEs/INSERTs with one record holding a lone surrogate
    # (not encodable as UTF-8: neither JSON nor the driver can send it)
    lone = "k\ud800"
    if where == "item attribute":
        poisoned = insert({"Id": "k5"}, BASE + 5, {"note": lone})
    elif where == "key of an INSERT":
        poisoned = insert({"Id": lone}, BASE + 5)
    else:
        poisoned = remove({"Id": lone}, BASE + 5)
    records = [remove({"Id": f"k{i}"}, BASE + i) for i in range(10)]
    records[5] = poisoned

    # WHEN it is processed
    result = replicator.process(records, deadline())

    # THEN the record is dead-lettered (an undecodable value, README: Failure handling),
    # the nine good ones are applied and nothing is reported
    assert result.response() == NO_FAILURES, result.error
    letters = dead_letters(pg_engine, pg_schema)
    assert [d["sequence_number"] for d in letters] == [seq_of(poisoned)]
    assert set(replica(pg_engine, pg_schema, "orders")) == {f"k{i}" for i in range(10) if i != 5}


# --- 6. a dead letter that cannot be written ------------------------------------------


def batch_with_bad_records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    good = [insert({"Id": i}, BASE + i, {"v": i}) for i in range(10)]
    bads = [
        with_new_image(1, flag={"BOOL": "yes"}),
        with_new_image(2, note={"S": "a\x00b"}),
        bad(3, eventName="UPSERT"),
    ]
    return good[:4] + bads[:1] + good[4:7] + bads[1:] + good[7:], bads


def refuse_dead_letters(engine: Engine, schema: str, only_sequence: str | None = None) -> None:
    condition = "" if only_sequence is None else f" when (new.sequence_number = '{only_sequence}')"
    with engine.begin() as conn:
        conn.execute(
            text(
                f'create function "{schema}".refuse() returns trigger language plpgsql as '
                "$$ begin raise exception 'cdc_dead_letters is read-only today'; end $$"
            )
        )
        conn.execute(
            text(
                f'create trigger refuse before insert on "{schema}".cdc_dead_letters '
                f'for each row{condition} execute function "{schema}".refuse()'
            )
        )


def test_dead_letters_that_cannot_be_written_are_reported_and_good_rows_committed(
    replicator: Replicator, pg_engine: Engine, pg_schema: str
) -> None:
    # GIVEN a cdc_dead_letters table whose trigger refuses every insert
    ensure_bookkeeping(pg_engine, pg_schema)
    refuse_dead_letters(pg_engine, pg_schema)
    records, bads = batch_with_bad_records()

    # WHEN a batch with three bad records among ten good ones is processed
    result = replicator.process(records, deadline())

    # THEN the three bad records are reported by SequenceNumber, for redelivery
    reported = [f["itemIdentifier"] for f in result.response()["batchItemFailures"]]
    assert sorted(reported) == sorted(seq_of(b) for b in bads)
    # AND the good records are committed all the same
    assert set(replica(pg_engine, pg_schema, "orders")) == {str(i) for i in range(10)}
    assert dead_letters(pg_engine, pg_schema) == []

    # WHEN the trigger is gone and Lambda redelivers the batch
    with pg_engine.begin() as conn:
        conn.execute(text(f'drop trigger refuse on "{pg_schema}".cdc_dead_letters'))
    result = replicator.process(records, deadline())

    # THEN the bad records are dead-lettered this time: nothing was lost
    assert result.response() == NO_FAILURES
    letters = dead_letters(pg_engine, pg_schema)
    assert sorted(d["sequence_number"] for d in letters) == sorted(seq_of(b) for b in bads)


def test_only_the_record_whose_dead_letter_cannot_be_written_is_reported(
    replicator: Replicator, pg_engine: Engine, pg_schema: str
) -> None:
    # GIVEN a trigger that refuses the dead letter of one record only
    records, bads = batch_with_bad_records()
    ensure_bookkeeping(pg_engine, pg_schema)
    refuse_dead_letters(pg_engine, pg_schema, only_sequence=seq_of(bads[1]))

    # WHEN the batch is processed
    result = replicator.process(records, deadline())

    # THEN that record alone is reported; the others are dead-lettered (handled)
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": seq_of(bads[1])}]}
    letters = dead_letters(pg_engine, pg_schema)
    assert sorted(d["sequence_number"] for d in letters) == sorted(
        [seq_of(bads[0]), seq_of(bads[2])]
    )
    assert set(replica(pg_engine, pg_schema, "orders")) == {str(i) for i in range(10)}


@pytest.fixture
def role_without_dead_letter_insert(pg_role: Any, pg_engine: Engine, pg_schema: str) -> Engine:
    """An engine connecting as a role that may write replica tables and checkpoints but
    may not INSERT into cdc_dead_letters."""
    ensure_bookkeeping(pg_engine, pg_schema)
    engine: Engine = pg_role(
        'grant usage, create on schema "{schema}" to "{role}"',
        'grant select on all tables in schema "{schema}" to "{role}"',
        'grant insert, update on "{schema}".cdc_checkpoints to "{role}"',
        'grant update on "{schema}".cdc_dead_letters to "{role}"',
    )
    return engine


def test_dead_letters_refused_by_privileges_are_reported(
    role_without_dead_letter_insert: Engine, pg_engine: Engine, pg_schema: str
) -> None:
    # GIVEN a replicator connecting as a role without INSERT on cdc_dead_letters
    engine = role_without_dead_letter_insert
    replicator = Replicator(engine, Settings(database_url=engine.url, schema=pg_schema))
    records, bads = batch_with_bad_records()

    # WHEN a batch with bad records is processed
    result = replicator.process(records, deadline())

    # THEN the bad records are reported, the good ones committed, nothing raised
    reported = [f["itemIdentifier"] for f in result.response()["batchItemFailures"]]
    assert sorted(reported) == sorted(seq_of(b) for b in bads)
    assert result.error is not None
    assert "dead letters not written" in result.error
    assert set(replica(pg_engine, pg_schema, "orders")) == {str(i) for i in range(10)}
    assert dead_letters(pg_engine, pg_schema) == []
