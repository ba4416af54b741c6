"""Numbers are ASCII digits only (issue 12, item 3).

Python's `\\d`, `int()` and `Decimal()` accept every Unicode decimal digit: Decimal() of
Arabic-Indic 1-2-3 is 123, int() of fullwidth 4-2 is 42. DynamoDB numbers are ASCII, so
anything else is a malformed value: never a number, and above all never a key that lands
on another item's row. Every path that reads a number from a record is checked: the
careful and the fast decoders, keys, sequence numbers, typed columns (numbers, epoch
times, dates, ISO times) and the mapping's type names; and, through the replicator, on
PostgreSQL, MariaDB and SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.config import load_settings
from cdc.core.convert import ConversionError, converter, parse_type
from cdc.core.decode import fast_number, image_to_plain, parse_number, to_plain, to_python
from cdc.core.errors import ConfigError, DecodeError, MalformedRecord
from cdc.core.jsontext import image_to_json
from cdc.sources.dynamodb_streams.records import parse_record, sequence_of
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import insert, record

ARABIC_123 = "\u0661\u0662\u0663"  # Arabic-Indic 1 2 3
FULLWIDTH_42 = "\uff14\uff12"  # fullwidth 4 2
NON_ASCII_NUMBERS = [
    ARABIC_123,
    FULLWIDTH_42,
    "\u0967\u0968\u0969",  # Devanagari १२३
    "\u09e7\u09e8",  # Bengali
    "\u06f1\u06f2\u06f3",  # Extended Arabic-Indic (Persian)
    "\U0001d7cf\U0001d7d0",  # mathematical bold 1 2
    "12\u0663",  # one non-ASCII digit at the end
    "-\u0664\u0662",
    "1.\uff15",
    "1e\u0661",
    "\u0660",
    "\u00b2",  # superscript two: str.isdigit() says yes
]


def _ids(values: list[str]) -> list[str]:
    return [v.encode("unicode_escape").decode("ascii") for v in values]


# --- the decoders ----------------------------------------------------------------------


@pytest.mark.parametrize("text", NON_ASCII_NUMBERS, ids=_ids(NON_ASCII_NUMBERS))
def test_a_number_in_non_ascii_digits_is_a_decode_error_on_every_path(text: str) -> None:
    # GIVEN an N value written with digits that are not ASCII
    image = {"n": {"N": text}, "nested": {"M": {"l": {"L": [{"N": text}]}}}}
    # WHEN any decoder reads it THEN it is not a number
    with pytest.raises(DecodeError, match="is not a number"):
        parse_number(text, "n")
    with pytest.raises(DecodeError):
        fast_number(text)
    for decode in (to_plain, to_python):
        with pytest.raises(DecodeError, match=r"^value: N value"):
            decode({"N": text})
        with pytest.raises(DecodeError, match=r"^value\[1\]: N value"):
            decode({"NS": ["1", text]})
    for whole in (image_to_plain, image_to_json):
        with pytest.raises(DecodeError, match=r"^NewImage\.n: N value"):
            whole(image, "NewImage")
        with pytest.raises(DecodeError, match=r"^NewImage\.nested\.l\[0\]: N value"):
            whole({"nested": image["nested"]}, "NewImage")


_ascii_numbers = st.from_regex(
    r"-?[0-9]{1,10}(\.[0-9]{1,5})?([eE][-+]?[0-9]{1,2})?", fullmatch=True
)
_unicode_digits = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@settings(max_examples=300, deadline=None)
@given(_ascii_numbers, _unicode_digits, st.integers(min_value=0, max_value=30))
def test_any_non_ascii_digit_anywhere_makes_a_number_invalid(
    number: str, digit: str, where: int
) -> None:
    # GIVEN a valid ASCII number with one ASCII character swapped for a Unicode digit
    positions = [i for i, c in enumerate(number) if c.isdigit()]
    at = positions[where % len(positions)]
    text = number[:at] + digit + number[at + 1 :]
    # WHEN it is decoded, on the careful and on the fast paths
    # THEN it is refused, never read as the number it looks like
    with pytest.raises(DecodeError):
        parse_number(text, "n")
    with pytest.raises(DecodeError):
        image_to_json({"n": {"N": text}}, "NewImage")
    with pytest.raises(DecodeError):
        image_to_plain({"n": {"N": text}}, "NewImage")


# --- keys and sequence numbers ---------------------------------------------------------


@pytest.mark.parametrize("text", NON_ASCII_NUMBERS, ids=_ids(NON_ASCII_NUMBERS))
def test_a_key_in_non_ascii_digits_is_a_decode_error(text: str) -> None:
    # GIVEN a record whose N key is written in non-ASCII digits
    rec = record("INSERT", {}, "111", raw_keys={"Id": {"N": text}}, new={"Id": 1})
    # WHEN it is parsed THEN the key is refused, naming it
    with pytest.raises(DecodeError, match=r"^Keys\.Id: "):
        parse_record(rec, 0)


@pytest.mark.parametrize("sequence", [ARABIC_123, FULLWIDTH_42, "11\u0661", "\U0001d7cf"], ids=_ids)
def test_a_sequence_number_in_non_ascii_digits_is_malformed(sequence: str) -> None:
    # GIVEN a record whose SequenceNumber is written in non-ASCII digits
    rec = insert({"Id": 1}, sequence)
    # WHEN it is parsed THEN it is malformed, and no failure is reported under it
    with pytest.raises(MalformedRecord, match="SequenceNumber"):
        parse_record(rec, 0)
    assert sequence_of(rec) is None


# --- typed columns and the mapping -----------------------------------------------------


@pytest.mark.parametrize("kind", ["numeric", "numeric(12,2)", "bigint", "integer", "double"])
@pytest.mark.parametrize("text", [ARABIC_123, FULLWIDTH_42, "1.\uff15"], ids=_ids)
def test_a_typed_number_column_refuses_non_ascii_digits(kind: str, text: str) -> None:
    # GIVEN a typed column and an N value in non-ASCII digits
    convert = converter("c", parse_type(kind))
    # WHEN it is converted THEN it is a decode error, not a number
    with pytest.raises(DecodeError, match="is not a number"):
        convert({"N": text}, "NewImage.c")
    with pytest.raises(DecodeError):
        converter("c", parse_type("numeric[]"))({"NS": ["1", text]}, "NewImage.c")


@pytest.mark.parametrize("time_format", ["auto", "epoch_s", "epoch_ms"])
def test_an_epoch_time_in_non_ascii_digits_is_refused(time_format: str) -> None:
    convert = converter("at", parse_type("timestamptz"), time_format)
    with pytest.raises(DecodeError, match="is not a number"):
        convert({"N": "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660"}, "at")


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("date", "\u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0661"),
        ("date", "2024-01-0\u0661"),
        ("date", "\uff12\uff10\uff12\uff14-01-01"),
        ("timestamptz", "2024-01-01T1\u0662:00:00Z"),
        ("timestamptz", "\u0662\u0660\u0662\u0664-01-01T00:00:00"),
    ],
    ids=lambda v: v.encode("unicode_escape").decode("ascii"),
)
def test_dates_and_iso_times_in_non_ascii_digits_are_refused(kind: str, text: str) -> None:
    convert = converter("c", parse_type(kind), "iso" if kind == "timestamptz" else "auto")
    with pytest.raises(ConversionError, match="ISO-8601"):
        convert({"S": text}, "NewImage.c")


@pytest.mark.parametrize(
    "spelling", ["numeric(\uff11\uff12,2)", "numeric(12,\u0662)", "numeric(\u0661\u0662)"]
)
def test_a_mapping_type_with_non_ascii_digits_is_a_configuration_error(
    spelling: str, tmp_path: Path
) -> None:
    # GIVEN a mapping file whose numeric precision is written in fullwidth digits
    assert parse_type("numeric(12,2)").precision == 12
    with pytest.raises(ValueError, match="unknown column type"):
        parse_type(spelling)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        f'[tables.Orders]\nkeys = ["Id"]\n[tables.Orders.columns]\nId = "bigint"\n'
        f'Total = "{spelling}"\n',
        encoding="utf-8",
    )
    # WHEN the settings are read THEN it is refused at start-up, naming the column
    with pytest.raises(ConfigError, match="Total"):
        load_settings({"CDC_DATABASE_URL": "sqlite://", "CDC_CONFIG": str(mapping)})


# --- through the replicator, on every database -----------------------------------------


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def test_a_key_in_non_ascii_digits_never_overwrites_another_item(database: Database) -> None:
    # GIVEN the item with key 123, and a record whose key is 123 in Arabic-Indic digits
    # and another whose attribute is 42 in fullwidth digits
    good = insert({"Id": 123}, 1001, {"v": "the real 123"})
    impostor = record("INSERT", {}, 1002, raw_keys={"Id": {"N": ARABIC_123}}, new={"v": "impostor"})
    impostor["dynamodb"]["NewImage"]["Id"] = {"N": ARABIC_123}
    fullwidth = insert({"Id": 7}, 1003)
    fullwidth["dynamodb"]["NewImage"]["n"] = {"N": FULLWIDTH_42}
    # WHEN they are applied in one batch
    result = database.process([good, impostor, fullwidth])
    # THEN nothing is reported, item 123 is untouched, and the two records are dead
    # letters saying which value is not a number
    assert result.response() == {"batchItemFailures": []}
    items = database.items("orders")
    assert items["123"] == ({"Id": 123, "v": "the real 123"}, 1001)
    assert set(items) == {"123"}
    letters = {d["sequence_number"]: d for d in database.dead_letters()}
    assert set(letters) == {"1002", "1003"}
    assert letters["1002"]["error_class"] == "decode"
    assert "Keys.Id" in letters["1002"]["error_message"]
    assert letters["1003"]["error_class"] == "decode"
    assert "NewImage.n" in letters["1003"]["error_message"]
    assert "is not a number" in letters["1003"]["error_message"]


# --- numbers read outside records -------------------------------------------------------


@pytest.mark.parametrize("sequence", [ARABIC_123, "11\u0661", FULLWIDTH_42])
def test_an_on_failure_record_with_non_ascii_sequence_numbers_is_refused(sequence: str) -> None:
    # GIVEN an on-failure invocation record (cdc redrive-failures) whose sequence number
    # is written in non-ASCII digits
    import json

    from cdc.sources.dynamodb_streams.on_failure import batch_info

    info = {
        "streamArn": "arn:aws:dynamodb:eu-central-1:123456789012:table/Orders/stream/x",
        "shardId": "shardId-1",
        "startSequenceNumber": "100",
        "endSequenceNumber": sequence,
    }
    # WHEN it is read THEN it is not a sequence number
    with pytest.raises(ValueError, match="is not a sequence number"):
        batch_info(json.dumps({"DDBStreamBatchInfo": info}))


@pytest.mark.parametrize("text", ["\u0664\u0668h", "\uff17d", "1\u0665m"])
def test_a_duration_in_non_ascii_digits_is_refused(text: str) -> None:
    import argparse

    from cdc.app.cli import parse_duration

    assert parse_duration("48h").total_seconds() == 48 * 3600
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
        parse_duration(text)
