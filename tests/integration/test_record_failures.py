"""Bad records are dead-lettered, on every database, never reported forever (issue 12,
items 7, 8 and 18).

- A record's strings are untrusted: a lone surrogate or U+0000 in `eventName`, in the
  stream ARN or elsewhere must not make its dead letter unwritable (PostgreSQL refuses
  U+0000 in text, and no UTF-8 text holds a lone surrogate): the columns beside the raw
  record are escaped, the raw record keeps the record losslessly.
- A failed record without a usable SequenceNumber is covered by an earlier record's;
  a dead-lettered one needs no identifier at all.
- A record with three key attributes, nesting deeper than DynamoDB's 32 levels, an
  unhashable eventName or a set-typed column given a non-list are malformed or decode
  errors, dead-lettered before any DDL, never "internal".
- The raw record keeps what was delivered: an infinite float stays `1e400`, not `null`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cdc.config import Settings, load_settings
from cdc.core.deadline import Deadline
from cdc.core.errors import MalformedRecord
from cdc.core.rawjson import raw_json, storable
from cdc.jobs.replicate import Replicator
from cdc.sources.dynamodb_streams.records import failure_identifiers, parse_record
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import FakeContext, insert, stream_arn
from tests.integration.test_dead_letters import ensure_bookkeeping, refuse_dead_letters

NO_FAILURES: dict[str, list[Any]] = {"batchItemFailures": []}


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def broken(seq: int | str, **fields: Any) -> dict[str, Any]:
    """A good Orders INSERT of key `seq` whose top-level fields are then replaced."""
    rec = insert({"Id": int(seq) % 1000}, seq, {"v": 1})
    rec.update(fields)
    return rec


def same_record(stored: str, rec: Any) -> bool:
    """The raw record, read back as Lambda's runtime reads an event, is `rec` exactly."""
    return _same(json.loads(stored), rec)


def _same(a: Any, b: Any) -> bool:
    # == would take 1 for 1.0 and NaN for unequal to itself; repr tells every JSON
    # value apart, types, key order and NaN included.
    return repr(a) == repr(b)


# --- item 7: every dead-letter column can be stored ------------------------------------

LONE = "\ud800"
HOSTILE = {
    "lone surrogate in eventName": {"eventName": "INSERT" + LONE},
    "U+0000 in eventName": {"eventName": "INS\x00ERT"},
    "lone surrogate in the stream ARN": {"eventSourceARN": stream_arn("Orders") + LONE},
    "U+0000 in the stream ARN": {"eventSourceARN": stream_arn("Orders\x00")},
    "long ARN of lone surrogates": {"eventSourceARN": "arn:" + "\udfff" * 600},
    "lone surrogate in eventSource": {"eventSource": "aws:dynamodb" + LONE},
}


@pytest.mark.parametrize("what", list(HOSTILE))
def test_a_record_with_unstorable_strings_is_dead_lettered_on_every_database(
    database: Database, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    # GIVEN a batch where one record carries a string no database column can store as
    # is, between two good records
    hostile = broken(2002, **HOSTILE[what])
    batch = [insert({"Id": 1}, 2001, {"v": 1}), hostile, insert({"Id": 3}, 2003, {"v": 3})]
    # WHEN Lambda delivers it
    response = database.handle(monkeypatch, batch)
    # THEN nothing is reported: the record is dead-lettered (malformed), the good ones
    # applied
    assert response == NO_FAILURES
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "malformed"
    assert set(database.items("orders")) == {"1", "3"}
    # AND the raw record is the record, losslessly; the columns beside it are escaped
    assert same_record(letter["raw_record"], hostile)
    for column in ("event_name", "stream_arn", "error_message", "source_table", "keys"):
        value = letter[column]
        assert value is None or ("\x00" not in value and value.encode("utf-8")), column
    assert len(letter["stream_arn"] or "") <= 512


def test_unstorable_strings_and_a_bad_sequence_number_report_nothing(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a record with a lone surrogate in eventName, U+0000 in its ARN and a
    # SequenceNumber that is not one, among good records
    hostile = broken(
        2002,
        eventName="MODIFY" + LONE,
        eventSourceARN=stream_arn("Orders") + "\x00",
    )
    hostile["dynamodb"]["SequenceNumber"] = "20" + LONE
    batch = [insert({"Id": 1}, 2001), hostile, insert({"Id": 3}, 2003)]
    # WHEN Lambda delivers it
    response = database.handle(monkeypatch, batch)
    # THEN no itemIdentifier is reported (not "", which would retry the whole batch):
    # the record is a dead letter showing the escaped strings
    assert response == NO_FAILURES
    (letter,) = database.dead_letters()
    assert letter["event_name"] == "MODIFY\\ud800"
    assert letter["stream_arn"] == stream_arn("Orders") + "\\u0000"
    assert letter["sequence_number"] is None
    assert same_record(letter["raw_record"], hostile)


def test_storable_escapes_only_what_no_database_can_store() -> None:
    assert storable("plain ascii") == "plain ascii"
    assert storable("héllo ✓ 😀") == "héllo ✓ 😀"
    assert storable("a\x00b\ud800c\udfff") == "a\\u0000b\\ud800c\\udfff"
    assert storable("\ud800" * 10, 14) == "\\ud800\\ud800\\u"
    assert storable(None) is None


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        # F: failed, D: dead-lettered or applied; "-" marks a record with no usable
        # SequenceNumber
        (["1F", "2D", "3F"], ["1", "3"]),
        (["1D", "-F", "3D"], ["1"]),  # covered by the record before it
        (["1D", "2D", "-F", "-F", "5F"], ["2", "5"]),
        (["-F", "2F"], ["", "2"]),  # nothing before it: the whole batch
        (["-D", "2D"], []),
        (["1F", "1F"], ["1"]),
    ],
)
def test_failure_identifiers_cover_records_without_a_usable_sequence_number(
    outcomes: list[str], expected: list[str]
) -> None:
    records = [
        broken(1000 + i) if o[0] == "-" else insert({"Id": i}, o[:-1])
        for i, o in enumerate(outcomes)
    ]
    for rec, o in zip(records, outcomes, strict=True):
        if o[0] == "-":
            rec["dynamodb"]["SequenceNumber"] = "not a number"
    failed = [i for i, o in enumerate(outcomes) if o.endswith("F")]
    assert failure_identifiers(records, failed) == expected


def test_a_failed_record_without_sequence_number_is_retried_from_the_one_before(
    pg_engine: Engine, pg_schema: str
) -> None:
    # GIVEN a database that refuses every dead letter, and a batch whose malformed
    # record has no usable SequenceNumber, after a good record
    ensure_bookkeeping(pg_engine, pg_schema)
    refuse_dead_letters(pg_engine, pg_schema)
    hostile = broken(2002, eventName="UPSERT")
    hostile["dynamodb"]["SequenceNumber"] = "x"
    batch = [insert({"Id": 1}, 2001), hostile, insert({"Id": 3}, 2003)]
    replicator = Replicator(pg_engine, Settings(database_url=pg_engine.url, schema=pg_schema))
    # WHEN it is processed
    result = replicator.process(batch, Deadline.from_context(FakeContext(30_000)))
    # THEN Lambda is told to retry from the good record before it (harmless: stale),
    # not the whole batch
    assert result.response() == {"batchItemFailures": [{"itemIdentifier": "2001"}]}


# --- item 8: malformed before any DDL, never "internal" --------------------------------


def test_three_key_attributes_are_malformed() -> None:
    rec = insert({"pk": "a", "sk": "b", "third": "c"}, 111)
    with pytest.raises(MalformedRecord, match=r"3 attributes .* one or two"):
        parse_record(rec, 0)


def test_a_record_with_three_keys_is_dead_lettered_before_any_table_is_made(
    database: Database,
) -> None:
    # GIVEN a batch whose first record of table Triple has three key attributes (on
    # MariaDB it used to reach the DDL and wedge the batch), and good records
    triple = insert({"pk": "a", "sk": "b", "third": "c"}, 3001, table="Triple")
    batch = [insert({"Id": 1}, 3000), triple, insert({"Id": 2}, 3002)]
    # WHEN it is processed
    result = database.process(batch)
    # THEN it is a malformed dead letter, no table was made for it, the rest applied
    assert result.response() == NO_FAILURES
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "malformed"
    assert "one or two" in letter["error_message"]
    assert letter["sequence_number"] == "3001"
    assert "triple" not in database.table_names()
    assert set(database.items("orders")) == {"1", "2"}


def nested(levels: int, leaf: Any = None) -> dict[str, Any]:
    """An AttributeValue `levels` maps and lists deep (alternating)."""
    value: dict[str, Any] = leaf or {"S": "bottom"}
    for level in range(levels):
        value = {"M": {"m": value}} if level % 2 else {"L": [value]}
    return value


@pytest.mark.parametrize("levels", [33, 200])
def test_nesting_deeper_than_dynamodb_allows_is_a_decode_dead_letter(
    database: Database, monkeypatch: pytest.MonkeyPatch, levels: int
) -> None:
    # GIVEN a record nested deeper than DynamoDB's 32 levels (200: deeper than orjson
    # encodes, where the careful paths used to end in "internal")
    deep = insert({"Id": 5}, 4005)
    deep["dynamodb"]["NewImage"]["deep"] = nested(levels)
    # WHEN Lambda delivers it with a good record
    response = database.handle(monkeypatch, [insert({"Id": 4}, 4004), deep])
    # THEN it is a decode dead letter saying so, holding the record losslessly
    assert response == NO_FAILURES
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "decode", letter["error_message"]
    assert "nested deeper than DynamoDB's 32 levels" in letter["error_message"]
    assert letter["error_message"].startswith("NewImage.deep")
    assert same_record(letter["raw_record"], deep)
    assert set(database.items("orders")) == {"4"}


def test_thirty_two_levels_decode() -> None:
    # GIVEN an item nested exactly 32 levels: DynamoDB allows it
    from cdc.core.decode import image_to_plain
    from cdc.core.jsontext import dumps, image_to_json

    image = {"Id": {"N": "1"}, "deep": nested(32)}
    # THEN both decoders accept it and agree
    text = image_to_json(image, "NewImage")
    assert text.count("[") + text.count("{") == 33
    assert text == dumps(image_to_plain(image, "NewImage"))


@pytest.mark.parametrize(
    "name", [["INSERT"], {"S": "INSERT"}, 1, None], ids=["list", "dict", "int", "null"]
)
def test_an_event_name_of_the_wrong_type_is_malformed_not_internal(
    database: Database, name: Any
) -> None:
    rec = broken(5001, eventName=name)
    result = database.process([rec, insert({"Id": 2}, 5002)])
    assert result.response() == NO_FAILURES
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "malformed"
    assert "eventName" in letter["error_message"]


def test_a_set_column_given_a_non_list_is_a_decode_error_not_internal(
    database: Database, tmp_path: Path
) -> None:
    # GIVEN a typed mapping with text[] and numeric[] columns
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[tables.Orders]\nkeys = ["Id"]\n[tables.Orders.columns]\nId = "bigint"\n'
        'Tags = "text[]"\nNums = "numeric[]"\n',
        encoding="utf-8",
    )
    env = {"CDC_DATABASE_URL": database.engine.url.render_as_string(False)}
    env["CDC_CONFIG"] = str(mapping)
    if database.schema:
        env["CDC_SCHEMA"] = database.schema
    settings = load_settings(env)
    # AND records whose list payload is not a list
    bad_tags = insert({"Id": 1}, 6001)
    bad_tags["dynamodb"]["NewImage"]["Tags"] = {"L": 5}
    bad_nums = insert({"Id": 2}, 6002)
    bad_nums["dynamodb"]["NewImage"]["Nums"] = {"L": None}
    good = insert({"Id": 3}, 6003, {"Tags": ["a", "b"], "Nums": [1, 2]})
    # WHEN they are applied
    result = database.replicator(settings).process(
        [bad_tags, bad_nums, good], Deadline.from_context(FakeContext(30_000))
    )
    # THEN the bad ones are decode dead letters naming the attribute
    assert result.response() == NO_FAILURES
    letters = {d["sequence_number"]: d for d in database.dead_letters()}
    assert {s: d["error_class"] for s, d in letters.items()} == {
        "6001": "decode",
        "6002": "decode",
    }
    assert "NewImage.Tags" in letters["6001"]["error_message"]
    assert "NewImage.Nums" in letters["6002"]["error_message"]


# --- item 18: the raw record as delivered ----------------------------------------------


def test_an_infinite_number_stays_in_the_raw_record(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a record whose ApproximateCreationDateTime was 1e400 in the event's JSON:
    # Lambda's runtime (Python's json) hands the function float("inf"); another field
    # holds NaN and -inf
    rec = insert({"Id": 1}, 7001)
    rec["dynamodb"]["ApproximateCreationDateTime"] = json.loads("1e400")
    rec["dynamodb"]["SizeBytes"] = float("nan")
    rec["extra"] = [float("-inf"), 0.1, 1.0, 12345678901234567890123]
    # WHEN it is dead-lettered (no time is that far)
    response = database.handle(monkeypatch, [rec])
    assert response == NO_FAILURES
    (letter,) = database.dead_letters()
    assert letter["error_class"] == "malformed"
    # THEN the raw record reads back as exactly what the function was given, the
    # infinite number as a JSON number, not null
    raw = letter["raw_record"]
    assert '"ApproximateCreationDateTime":1e400' in raw
    assert '"extra":[-1e400,0.1,1.0,12345678901234567890123]' in raw
    assert "null" not in raw
    assert same_record(raw, rec)


def test_raw_json_is_lossless_and_storable() -> None:
    record = {
        "s": "a\ud800b",
        "\udfff": [float("inf"), -0.0, 2.5e-300, True, None],
        "n": "\x00",
    }
    text = raw_json(record)
    assert _same(json.loads(text), record)
    assert "\\ud800" in text and "\\udfff" in text
    text.encode("utf-8")  # storable: no lone surrogate left
    assert raw_json({"a": 1.5, "b": "é"}) == '{"a":1.5,"b":"é"}'  # the fast path


@pytest.mark.parametrize("kind", ["text[]", "numeric[]"])
@pytest.mark.parametrize("payload", [5, None, True, 1.5])
def test_a_set_column_converter_given_a_non_list_raises_decode_error(
    kind: str, payload: Any
) -> None:
    # GIVEN a text[] or numeric[] column's converter and an L whose payload is no list
    from cdc.core.convert import converter, parse_type
    from cdc.core.errors import DecodeError

    convert = converter("c", parse_type(kind))
    # WHEN it converts THEN it is a decode error naming the attribute (it was a
    # TypeError: "internal")
    with pytest.raises(DecodeError, match=r"^NewImage\.c: L value"):
        convert({"L": payload}, "NewImage.c")
