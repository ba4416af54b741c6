"""Typed mappings (issue 5), against a real PostgreSQL and MariaDB/MySQL, and SQLite
where it is cheap.

- every column kind round-trips exactly (numerics never through float, timestamps from
  ISO-8601 and epoch seconds/milliseconds, arrays, bytes, nested paths, `extra`);
- a value that does not fit its column is dead-lettered (error class "conversion",
  naming the column, the attribute and the value) while the rest of the batch applies;
- identifiers longer than the database allows (63 bytes on PostgreSQL, 64 on MySQL) are
  cut with a hash suffix, deterministically, and
  two source names that land on one identifier are an error, never a silent merge;
- the mapping file is validated: unknown keys and impossible keys are errors naming
  the file, the table and the key.

Settings always come from `load_settings()` over a TOML file, so the parser is part of
every test.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, Text, cast, inspect, select

from cdc.config import Settings, load_settings
from cdc.core.errors import ConfigError
from cdc.core.jsontext import loads
from cdc.core.naming import snake
from cdc.core.versions import sequence_of
from cdc.jobs.replicate import Replicator
from cdc.sql.migrations import target_metadata
from tests.databases import DATABASES, WITH_SCHEMAS, open_database
from tests.factories import insert, modify, record

pytestmark = pytest.mark.postgres

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"
BASE = 10**20  # sequence numbers are 21-40 digit decimal strings


# --- where the replica lives ------------------------------------------------------------


@dataclass
class Target:
    engine: Engine
    schema: str | None
    url: str

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def env(self, config: Path) -> dict[str, str]:
        env = {"CDC_CONFIG": str(config), "CDC_DATABASE_URL": self.url}
        if self.schema is not None:
            env["CDC_SCHEMA"] = self.schema
        return env

    def settings(self, config: Path) -> Settings:
        return load_settings(self.env(config))

    def qualified(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else name

    def table(self, settings: Settings, name: str) -> Table:
        """The typed table as the code declares it (JSON columns read back as text)."""
        return target_metadata(settings, self.dialect).tables[self.qualified(name)]

    def table_names(self) -> set[str]:
        return set(inspect(self.engine).get_table_names(schema=self.schema))

    def reflect(self, name: str) -> Table:
        """A table as the database has it (dialect-neutral queries, no quoting by hand)."""
        return Table(name, MetaData(), autoload_with=self.engine, schema=self.schema)

    def dead_letters(self) -> list[dict[str, Any]]:
        letters = self.reflect("cdc_dead_letters")
        with self.engine.connect() as conn:
            return [
                dict(r) for r in conn.execute(select(letters).order_by(letters.c.id)).mappings()
            ]


@pytest.fixture(params=DATABASES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    for database in open_database(request, tmp_path):
        yield Target(database.engine, database.schema, database.url)


@pytest.fixture(params=WITH_SCHEMAS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A database server (schemas, identifier limits): PostgreSQL and MariaDB/MySQL."""
    for database in open_database(request, tmp_path):
        yield Target(database.engine, database.schema, database.url)


def write_mapping(tmp_path: Path, body: str, name: str = "mapping.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def all_types(tmp_path: Path) -> Path:
    return Path(shutil.copy(MAPPINGS / "all_types.toml", tmp_path / "all_types.toml"))


def put(
    id_: str, seq: int, attrs: dict[str, Any], *, table: str = "Things", event: str = "INSERT"
) -> dict[str, Any]:
    """A record whose NewImage is {"Id": id_, "Name": ...} plus raw AttributeValues."""
    rec = record(event, {"Id": id_}, BASE + seq, new={"Id": id_}, table=table)
    image = rec["dynamodb"]["NewImage"]
    image["Name"] = {"S": f"name of {id_}"}
    image.update(attrs)
    return rec


def rows_by_id(
    target: Target, settings: Settings, name: str = "things"
) -> dict[str, dict[str, Any]]:
    table = target.table(settings, name)
    with target.engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(table)).mappings()}


# --- 1. every column kind round-trips ---------------------------------------------------

T = datetime(2024, 3, 1, 12, 34, 56, tzinfo=UTC)
EPOCH_S = int(T.timestamp())
BIG38 = "12345678901234567890123456789012345678"
BYTES = b"\x00\x01\xfe\xff binary \x80"
JSON_COLUMNS = {"doc", "extra"}


def n(value: str) -> dict[str, str]:
    return {"N": value}


def s(value: str) -> dict[str, str]:
    return {"S": value}


NULL = {"NULL": True}

NULLED = ("Amount", "Price", "Big", "Flag", "Ratio", "At", "Day", "Doc", "Blob", "Tags", "Nums")

# (case id, attributes besides Id and Name, expected column values)
ROUND_TRIPS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("text", {}, {"name": "name of text"}),
    ("text-unicode", {"Name": s("héllo wörld ✓ 漢字 🚀")}, {"name": "héllo wörld ✓ 漢字 🚀"}),
    ("numeric-38-digits", {"Amount": n(BIG38)}, {"amount": Decimal(BIG38)}),
    ("numeric-38-fraction", {"Amount": n("-0." + BIG38)}, {"amount": Decimal("-0." + BIG38)}),
    ("numeric-smallest", {"Amount": n("1E-130")}, {"amount": Decimal("1E-130")}),
    ("numeric-largest", {"Amount": n("9.99E+125")}, {"amount": Decimal("9.99E+125")}),
    (
        "numeric-38-at-e125",
        {"Amount": n("9." + "9" * 37 + "E+125")},
        {"amount": Decimal("9." + "9" * 37 + "E+125")},
    ),
    ("numeric-p-s-max", {"Price": n("9999999999.99")}, {"price": Decimal("9999999999.99")}),
    ("numeric-p-s-min", {"Price": n("-9999999999.99")}, {"price": Decimal("-9999999999.99")}),
    ("numeric-p-s-fewer-places", {"Price": n("-0.5")}, {"price": Decimal("-0.5")}),
    ("numeric-38-2", {"Wide": n(BIG38[:36] + ".78")}, {"wide": Decimal(BIG38[:36] + ".78")}),
    (
        "numeric-38-2-negative",
        {"Wide": n("-" + BIG38[:36] + ".5")},
        {"wide": Decimal("-" + BIG38[:36] + ".5")},
    ),
    ("numeric-p-s-trailing-zeros", {"Price": n("12.3000")}, {"price": Decimal("12.3")}),
    ("bigint-max", {"Big": n(str(2**63 - 1))}, {"big": 2**63 - 1}),
    ("bigint-min", {"Big": n(str(-(2**63)))}, {"big": -(2**63)}),
    ("integer-max", {"Count": n(str(2**31 - 1))}, {"count": 2**31 - 1}),
    ("integer-min", {"Count": n(str(-(2**31)))}, {"count": -(2**31)}),
    ("integer-written-as-decimal", {"Count": n("42.000")}, {"count": 42}),
    ("smallint-max", {"Small": n("32767")}, {"small": 32767}),
    ("smallint-min", {"Small": n("-32768")}, {"small": -32768}),
    ("boolean-true", {"Flag": {"BOOL": True}}, {"flag": True}),
    ("boolean-false", {"Flag": {"BOOL": False}}, {"flag": False}),
    ("double", {"Ratio": n("3.14159")}, {"ratio": 3.14159}),
    ("double-large", {"Ratio": n("-1.5E+125")}, {"ratio": -1.5e125}),
    ("ts-iso-z", {"At": s("2024-03-01T12:34:56Z")}, {"at": T}),
    ("ts-iso-offset", {"At": s("2024-03-01T14:34:56+02:00")}, {"at": T}),
    ("ts-iso-negative-offset", {"At": s("2024-03-01T07:04:56-05:30")}, {"at": T}),
    ("ts-iso-naive-is-utc", {"At": s("2024-03-01T12:34:56")}, {"at": T}),
    (
        "ts-iso-fraction",
        {"At": s("2024-03-01T12:34:56.250Z")},
        {"at": T + timedelta(milliseconds=250)},
    ),
    ("ts-epoch-seconds", {"At": n(str(EPOCH_S))}, {"at": T}),
    (
        "ts-epoch-seconds-fraction",
        {"At": n(f"{EPOCH_S}.5")},
        {"at": T + timedelta(milliseconds=500)},
    ),
    ("ts-epoch-millis", {"At": n(f"{EPOCH_S}123")}, {"at": T + timedelta(milliseconds=123)}),
    ("ts-format-epoch-ms", {"AtMs": n(f"{EPOCH_S}000")}, {"at_ms": T}),
    # 86400000 would be read as seconds (year 4707) without format = "epoch_ms".
    (
        "ts-format-epoch-ms-small",
        {"AtMs": n("86400000")},
        {"at_ms": datetime(1970, 1, 2, tzinfo=UTC)},
    ),
    ("date", {"Day": s("2024-02-29")}, {"day": date(2024, 2, 29)}),
    (
        "jsonb-nested-exact",
        {
            "Doc": {
                "M": {
                    "big": n(BIG38),
                    "tiny": n("1E-130"),
                    "price": n("19.90"),
                    "list": {
                        "L": [n("1"), s("x"), NULL, {"BOOL": False}, {"M": {"deep": n("0.1")}}]
                    },
                    "set": {"SS": ["pear", "apple"]},
                    "bin": {"B": base64.b64encode(b"\x00\xff").decode()},
                }
            }
        },
        {
            "doc": {
                "big": Decimal(BIG38),
                "tiny": Decimal("1E-130"),
                "price": Decimal("19.90"),
                "list": [1, "x", None, False, {"deep": Decimal("0.1")}],
                "set": ["apple", "pear"],
                "bin": base64.b64encode(b"\x00\xff").decode(),
            }
        },
    ),
    ("jsonb-list", {"Doc": {"L": [n("1.5"), s("a")]}}, {"doc": [Decimal("1.5"), "a"]}),
    ("bytea", {"Blob": {"B": base64.b64encode(BYTES).decode()}}, {"blob": BYTES}),
    (
        "text-array-from-ss",
        {"Tags": {"SS": ["pear", "apple", "fig"]}},
        {"tags": ["apple", "fig", "pear"]},
    ),
    ("text-array-from-list", {"Tags": {"L": [s("z"), s("a"), s("z")]}}, {"tags": ["z", "a", "z"]}),
    ("text-array-empty-list", {"Tags": {"L": []}}, {"tags": []}),
    (
        "numeric-array-from-ns",
        {"Nums": {"NS": ["10", "2.5", "-1", BIG38, "1E-130"]}},
        {"nums": [Decimal("-1"), Decimal("1E-130"), Decimal("2.5"), Decimal("10"), Decimal(BIG38)]},
    ),
    (
        "numeric-array-from-list",
        {"Nums": {"L": [n("3"), n("1")]}},
        {"nums": [Decimal(3), Decimal(1)]},
    ),
    (
        "nested-path",
        {"Address": {"M": {"City": s("Berlin"), "Zip": s("10115")}}},
        {"city": "Berlin"},
    ),
    ("nested-path-missing", {"Address": {"M": {"Zip": s("10115")}}}, {"city": None}),
    (
        "extra-holds-unmapped",
        {
            "Amount": n("1"),
            "Color": s("red"),
            "Sizes": {"NS": ["2", "10"]},
            "Meta": {"M": {"k": n("1.50")}},
        },
        {
            "amount": Decimal(1),
            "extra": {"Color": "red", "Sizes": [2, 10], "Meta": {"k": Decimal("1.50")}},
        },
    ),
    (
        "null-attributes",
        dict.fromkeys(NULLED, NULL),
        dict.fromkeys(snake(a) for a in NULLED),
    ),
]
OPTIONAL_COLUMNS = (
    "amount",
    "price",
    "wide",
    "big",
    "count",
    "small",
    "flag",
    "ratio",
    "at",
    "at_ms",
    "day",
    "doc",
    "blob",
    "tags",
    "nums",
    "city",
)


def _comparable(actual: Any, expected: Any, column: str) -> Any:
    """Read-back values in the expected form: JSON columns parsed exactly, SQLite's
    arrays (JSON text) parsed, naive timestamps (SQLite) taken as UTC."""
    if actual is None:
        return None
    if column in JSON_COLUMNS or (isinstance(expected, list) and isinstance(actual, str)):
        return loads(actual)
    if isinstance(expected, datetime) and isinstance(actual, datetime) and actual.tzinfo is None:
        return actual.replace(tzinfo=UTC)
    if isinstance(expected, bytes) and isinstance(actual, memoryview):
        return bytes(actual)
    return actual


def test_every_column_kind_round_trips(target: Target, tmp_path: Path) -> None:
    settings = target.settings(all_types(tmp_path))
    replicator = Replicator(target.engine, settings)
    records = [put(case, i, attrs) for i, (case, attrs, _) in enumerate(ROUND_TRIPS, start=1)]
    records.append(put("minimal", 0, {}))
    result = replicator.process(records)
    assert result.failed == 0, result.error
    assert [(d["error_class"], d["error_message"]) for d in target.dead_letters()] == []
    assert result.applied == len(records)

    stored = rows_by_id(target, settings)
    mismatches = []
    for case, _, expected in ROUND_TRIPS:
        row = stored.get(case)
        if row is None:
            mismatches.append(f"{case}: no row")
            continue
        for column, want in expected.items():
            got = _comparable(row[column], want, column)
            exact_type = isinstance(want, Decimal | float) or type(got) is type(want)
            if got != want or not exact_type:
                mismatches.append(f"{case}: {column} = {row[column]!r}, expected {want!r}")
    assert not mismatches, "\n".join(mismatches)

    minimal = stored["minimal"]
    assert {c: minimal[c] for c in OPTIONAL_COLUMNS} == dict.fromkeys(OPTIONAL_COLUMNS)
    assert minimal["extra"] in (None, "{}")  # nothing unmapped
    # mapped attributes never land in `extra`, nested ones stay with their parent
    extra = loads(stored["nested-path"]["extra"])
    assert set(extra) == {"Address"}
    assert all(
        row["extra"] is None or not {"Id", "Name", "Amount"} & set(loads(row["extra"]))
        for row in stored.values()
    )


def test_exact_numbers_are_stored_exactly(target: Target, tmp_path: Path) -> None:
    """Not just equal after a round trip through Decimal: the database holds the digits
    (numeric on Postgres, canonical text on SQLite)."""
    settings = target.settings(all_types(tmp_path))
    values = {
        "a": BIG38,
        "b": "-0." + BIG38,
        "c": "1E-130",
        "d": "9.99E+125",
        "e": "1.234567890123456789012345678901234567E-100",
        "f": BIG38[:20] + "." + BIG38[20:],
    }
    records = [
        put(k, i, {"Amount": n(v), "Doc": {"M": {"v": n(v)}}})
        for i, (k, v) in enumerate(values.items())
    ]
    assert Replicator(target.engine, settings).process(records).failed == 0
    table = target.reflect("things")
    with target.engine.connect() as conn:
        stored = dict(conn.execute(select(table.c.id, cast(table.c.amount, Text))).all())
        docs = dict(conn.execute(select(table.c.id, cast(table.c.doc, Text))).all())
    for key, value in values.items():
        assert Decimal(stored[key]) == Decimal(value)
        assert len(stored[key].replace("-", "").replace(".", "").strip("0")) <= 38  # no float noise
        assert loads(docs[key])["v"] == Decimal(value)
        assert "e" not in docs[key].lower() or "E" in value  # never a float's repr


def test_epoch_ms_format_reads_milliseconds(target: Target, tmp_path: Path) -> None:
    """format = "epoch_ms": even a number that looks like seconds is milliseconds."""
    settings = target.settings(all_types(tmp_path))
    rec = put("ms", 1, {"AtMs": n(str(EPOCH_S))})
    assert Replicator(target.engine, settings).process([rec]).failed == 0
    got = _comparable(rows_by_id(target, settings)["ms"]["at_ms"], T, "at_ms")
    assert got == datetime.fromtimestamp(EPOCH_S / 1000, tz=UTC)


def test_unmapped_drop_keeps_no_extra_column(target: Target, tmp_path: Path) -> None:
    settings = target.settings(all_types(tmp_path))
    rec = put("d1", 1, {"Color": s("red")}, table="Dropped")
    result = Replicator(target.engine, settings).process([rec])
    assert result.failed == 0 and result.applied == 1, result.error
    columns = {
        c["name"] for c in inspect(target.engine).get_columns("dropped", schema=target.schema)
    }
    assert "extra" not in columns
    assert "color" not in columns
    row = rows_by_id(target, settings, "dropped")["d1"]
    assert row["name"] == "name of d1"
    assert set(row) == {
        "id",
        "name",
        "_cdc_seq",
        "_cdc_deleted",
        "_cdc_event_time",
        "_cdc_applied_at",
    }


def test_modify_replaces_every_typed_column(target: Target, tmp_path: Path) -> None:
    """A MODIFY carries the whole new image: a column whose attribute disappeared
    becomes NULL, `extra` follows the new image."""
    settings = target.settings(all_types(tmp_path))
    replicator = Replicator(target.engine, settings)
    first = put("m", 1, {"Amount": n("1.5"), "Flag": {"BOOL": True}, "Color": s("red")})
    second = put("m", 2, {"Count": n("7"), "Shape": s("round")}, event="MODIFY")
    assert replicator.process([first]).failed == 0
    assert replicator.process([second]).failed == 0
    row = rows_by_id(target, settings)["m"]
    assert (row["amount"], row["flag"], row["count"]) == (None, None, 7)
    assert loads(row["extra"]) == {"Shape": "round"}
    assert sequence_of(int(row["_cdc_seq"])) == BASE + 2


# --- 2. conversion errors are dead-lettered, the rest of the batch applies ------------

# (case id, attributes, column, attribute, value the message must show)
BAD_VALUES: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("text-into-numeric", {"Amount": s("12.5")}, "amount", "Amount", "12.5"),
    ("text-into-numeric-p-s", {"Price": s("abc")}, "price", "Price", "abc"),
    ("integer-over", {"Count": n("2147483648")}, "count", "Count", "2147483648"),
    ("integer-under", {"Count": n("-2147483649")}, "count", "Count", "-2147483649"),
    ("integer-fraction", {"Count": n("1.5")}, "count", "Count", "1.5"),
    ("bigint-over", {"Big": n("9223372036854775808")}, "big", "Big", "9223372036854775808"),
    ("bigint-under", {"Big": n("-9223372036854775809")}, "big", "Big", "-9223372036854775809"),
    ("smallint-over", {"Small": n("32768")}, "small", "Small", "32768"),
    ("numeric-p-s-three-places", {"Price": n("1.005")}, "price", "Price", "1.005"),
    ("numeric-p-s-three-places-zero", {"Price": n("0.001")}, "price", "Price", "0.001"),
    # more significant digits than Python's default decimal context (28) holds
    (
        "numeric-38-2-three-places",
        {"Wide": n(BIG38[:33] + ".005")},
        "wide",
        "Wide",
        BIG38[:33] + ".005",
    ),
    (
        "numeric-p-s-integer-digits",
        {"Price": n("12345678901.5")},
        "price",
        "Price",
        "12345678901.5",
    ),
    ("numeric-p-s-integer-only", {"Price": n("10000000000")}, "price", "Price", "10000000000"),
    ("numeric-p-s-exponent", {"Price": n("1E+10")}, "price", "Price", "1E+10"),
    ("timestamp-unparseable", {"At": s("yesterday at noon")}, "at", "At", "yesterday at noon"),
    ("timestamp-bad-day", {"At": s("2024-02-30T00:00:00Z")}, "at", "At", "2024-02-30"),
    (
        "timestamp-epoch-ms-given-text",
        {"AtMs": s("2024-03-01T12:34:56Z")},
        "at_ms",
        "AtMs",
        "2024-03-01",
    ),
    ("date-unparseable", {"Day": s("29/02/2024")}, "day", "Day", "29/02/2024"),
    ("boolean-from-string", {"Flag": s("true")}, "flag", "Flag", "true"),
    ("boolean-from-number", {"Flag": n("1")}, "flag", "Flag", "1"),
    ("text-from-number", {"Name": n("5")}, "name", "Name", "5"),
    ("bytea-from-text", {"Blob": s("not binary")}, "blob", "Blob", "not binary"),
    ("text-array-from-numbers", {"Tags": {"NS": ["1"]}}, "tags", "Tags", "1"),
    ("numeric-array-from-strings", {"Nums": {"SS": ["x"]}}, "nums", "Nums", "x"),
    (
        "nested-path-wrong-type",
        {"Address": {"M": {"City": n("10115")}}},
        "city",
        "Address.City",
        "10115",
    ),
]


def test_conversion_errors_are_dead_lettered_while_the_batch_applies(
    target: Target, tmp_path: Path
) -> None:
    settings = target.settings(all_types(tmp_path))
    replicator = Replicator(target.engine, settings)
    good = [
        put(f"good-{i}", 1000 + i, {"Amount": n("1.25"), "Count": n(str(i))})
        for i in range(len(BAD_VALUES) + 1)
    ]
    bad = {case: put(case, i, attrs) for i, (case, attrs, *_) in enumerate(BAD_VALUES, start=1)}
    missing = put("required-missing", 500, {})
    del missing["dynamodb"]["NewImage"]["Name"]
    null_required = put("required-null", 501, {"Name": NULL})
    # good and bad interleaved, as a real batch would be
    batch: list[dict[str, Any]] = [good[0]]
    for g, b in zip(good[1:], [*bad.values()], strict=True):
        batch += [b, g]
    batch += [missing, null_required]

    result = replicator.process(batch)

    assert result.failed == 0, result.error
    letters = {
        json.loads(d["raw_record"])["dynamodb"]["Keys"]["Id"]["S"]: d for d in target.dead_letters()
    }
    stored = rows_by_id(target, settings)
    assert (
        sorted(stored.keys() - {f"good-{i}" for i in range(len(good))}) == []
    )  # no bad row stored
    assert sorted({*bad, "required-missing", "required-null"} - letters.keys()) == []
    assert set(stored) == {f"good-{i}" for i in range(len(good))}
    assert all(r["amount"] == Decimal("1.25") for r in stored.values())
    assert result.dead_lettered == len(bad) + 2
    problems = []
    for case, _, column, attribute, value in BAD_VALUES:
        letter = letters[case]
        message = letter["error_message"]
        if letter["error_class"] != "conversion":
            problems.append(f"{case}: error_class {letter['error_class']!r}: {message}")
        for part in (column, attribute, value):
            if part not in message:
                problems.append(f"{case}: message does not name {part!r}: {message}")
        assert json.loads(letter["raw_record"]) == bad[case]
        assert letter["status"] == "pending"
    assert not problems, "\n".join(problems)
    for case in ("required-missing", "required-null"):
        letter = letters[case]
        assert letter["error_class"] == "conversion"
        assert "'name'" in letter["error_message"] and "'Name'" in letter["error_message"]


def test_bad_modify_leaves_the_stored_row_as_it_was(target: Target, tmp_path: Path) -> None:
    settings = target.settings(all_types(tmp_path))
    replicator = Replicator(target.engine, settings)
    assert replicator.process([put("k", 1, {"Price": n("10.50")})]).failed == 0
    result = replicator.process([put("k", 2, {"Price": n("10.505")}, event="MODIFY")])
    assert result.failed == 0 and result.dead_lettered == 1
    row = rows_by_id(target, settings)["k"]
    assert (row["price"], sequence_of(int(row["_cdc_seq"]))) == (Decimal("10.50"), BASE + 1)


# --- 5. identifiers: cutting, collisions, validation ------------------------------------

HASHED = re.compile(r"_[0-9a-f]{4,16}")


# The longest identifier each database keeps (bytes): PostgreSQL cuts at 63 bytes,
# MySQL/MariaDB allow 64 characters (cdc keeps to 64 bytes).
IDENTIFIER_BYTES = {"postgresql": 63, "mysql": 64}


def _fits(server: Target, identifier: str) -> bool:
    return len(identifier.encode("utf-8")) <= IDENTIFIER_BYTES[server.dialect]


def _replica_tables(target: Target) -> set[str]:
    return {t for t in target.table_names() if not t.startswith(("cdc_", "alembic_"))}


def test_long_source_table_and_key_names_in_document_mode(server: Target, tmp_path: Path) -> None:
    source = "Orders" + "X" * 94  # 100 characters, a valid DynamoDB table name
    key = "CustomerIdentifier" + "Z" * 82
    settings = server.settings(write_mapping(tmp_path, "[defaults]\n"))
    first = insert({key: "c1"}, BASE + 1, {"v": 1}, table=source)
    assert Replicator(server.engine, settings).process([first]).failed == 0
    # a second process (a cold container) finds the same names
    second = insert({key: "c2"}, BASE + 2, {"v": 2}, table=source)
    result = Replicator(server.engine, settings).process([second])
    assert result.failed == 0 and result.dead_lettered == 0 and result.applied == 1

    (table,) = _replica_tables(server)
    assert _fits(server, table) and table.startswith("orders_xxxx")
    assert HASHED.search(table[-17:]) and len(table) > 40
    columns = [c["name"] for c in inspect(server.engine).get_columns(table, schema=server.schema)]
    (key_column,) = [c for c in columns if c.startswith("customer_identifier")]
    assert _fits(server, key_column) and HASHED.search(key_column[-17:])
    stored = server.reflect(table)
    with server.engine.connect() as conn:
        keys = (
            conn.execute(select(stored.c[key_column]).order_by(stored.c[key_column]))
            .scalars()
            .all()
        )
    assert keys == ["c1", "c2"]


def test_long_and_multibyte_names_in_typed_mode(server: Target, tmp_path: Path) -> None:
    source = "Inventory" + "Q" * 91
    long_a = "WarehouseLocation" + "x" * 83  # two 100-character attributes that share
    long_b = "WarehouseLocation" + "x" * 82 + "y"  # their first 99 characters
    mapping = f"""
[tables.{source}]
keys = ["Id"]

[tables.{source}.columns]
Id = "text"
{long_a} = "text"
{long_b} = "text"
Size = {{ type = "integer", column = "{"größe_" + "ä" * 40}" }}

[tables.Warenlager]
table = "{"lager_" + "ü" * 40}"
keys = ["Id"]

[tables.Warenlager.columns]
Id = "text"
Note = "text"
"""
    settings = server.settings(write_mapping(tmp_path, mapping))
    records = [
        insert({"Id": "i1"}, BASE + 1, {long_a: "a", long_b: "b", "Size": 3}, table=source),
        insert({"Id": "w1"}, BASE + 2, {"Note": "ok"}, table="Warenlager"),
    ]
    result = Replicator(server.engine, settings).process(records)
    assert result.failed == 0 and result.dead_lettered == 0, server.dead_letters()

    tables = _replica_tables(server)
    assert len(tables) == 2 and all(_fits(server, t) for t in tables)
    (lager,) = [t for t in tables if t.startswith("lager_")]
    assert HASHED.search(lager[-17:]) and "\ufffd" not in lager  # cut on a character boundary
    (inventory,) = tables - {lager}
    assert inventory.startswith("inventory_qqq")

    columns = {
        c["name"] for c in inspect(server.engine).get_columns(inventory, schema=server.schema)
    }
    assert all(_fits(server, c) for c in columns)
    long_columns = sorted(c for c in columns if c.startswith("warehouse_location"))
    assert len(long_columns) == 2  # distinct, though their first 63 bytes are equal
    (size,) = [c for c in columns if c.startswith("größe_")]
    assert HASHED.search(size[-17:])
    with server.engine.connect() as conn:
        row = conn.execute(select(server.reflect(inventory))).mappings().one()
    assert {row[long_columns[0]], row[long_columns[1]]} == {"a", "b"}
    assert row[size] == 3

    # deterministic: the same mapping gives the same identifiers, every time
    again = target_metadata(
        server.settings(write_mapping(tmp_path, mapping, "again.toml")), server.dialect
    )
    assert {t.name for t in again.tables.values()} >= tables
    declared = again.tables[f"{server.schema}.{inventory}"]
    assert {c.name for c in declared.columns} == columns


def _config_error(target: Target, tmp_path: Path, body: str) -> ConfigError:
    """The ConfigError a mapping raises at start-up (reading it, or building the tables)."""
    path = write_mapping(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        _start(target, path)
    return caught.value


def _start(target: Target, path: Path) -> Replicator:
    return Replicator(target.engine, target.settings(path))


@pytest.mark.parametrize(
    ("columns", "attributes"),
    [
        ('userID = "text"\nuser_id = "integer"', ("userID", "user_id")),
        ('"order-total" = "numeric"\norder_total = "numeric"', ("order-total", "order_total")),
        ('Total = "numeric"\nSum = { type = "numeric", column = "total" }', ("Total", "Sum")),
        ('Extra = "text"', ("Extra",)),  # the `extra` column of unmapped attributes
        ('Seq = { type = "text", column = "_cdc_seq" }', ("Seq",)),
    ],
    ids=["snake", "punctuation", "explicit-column", "extra", "bookkeeping"],
)
def test_two_columns_with_one_identifier_are_a_config_error(
    server: Target, tmp_path: Path, columns: str, attributes: tuple[str, ...]
) -> None:
    body = f'[tables.Orders]\nkeys = ["Id"]\n\n[tables.Orders.columns]\nId = "text"\n{columns}\n'
    message = str(_config_error(server, tmp_path, body))
    for attribute in attributes:
        assert repr(attribute) in message or attribute in message, message
    assert "Orders" in message


def test_two_long_attributes_cut_to_one_prefix_do_not_collide(
    server: Target, tmp_path: Path
) -> None:
    a, b = "A" * 100, "A" * 99 + "B"
    body = TYPED.format(options="", columns=f'{a} = "text"\n{b} = "text"')
    settings = server.settings(write_mapping(tmp_path, body))
    table = target_metadata(settings, server.dialect).tables[f"{server.schema}.orders"]
    names = [c.name for c in table.columns if c.name.startswith("a")]
    assert len(set(names)) == 2 and all(_fits(server, x) for x in names)


@pytest.mark.parametrize(
    ("tables", "sources"),
    [
        ("[tables.Orders]\n[tables.orders]\n", ("Orders", "orders")),
        ('[tables.A1]\ntable = "shared"\n[tables.B1]\ntable = "shared"\n', ("A1", "B1")),
        ('[tables.Orders]\n[tables.Other]\ntable = "orders"\n', ("Orders", "Other")),
        (
            '[tables.OrderItems]\nkeys = ["Id"]\ncolumns = { Id = "text" }\n'
            '[tables."order-items"]\n',
            ("OrderItems", "order-items"),
        ),
    ],
    ids=["snake", "explicit", "explicit-vs-default", "typed-vs-document"],
)
def test_two_tables_with_one_target_are_a_config_error(
    server: Target, tmp_path: Path, tables: str, sources: tuple[str, str]
) -> None:
    message = str(_config_error(server, tmp_path, tables))
    assert all(source in message for source in sources), message


def test_two_long_table_names_with_one_prefix_do_not_collide(
    server: Target, tmp_path: Path
) -> None:
    a, b = "T" * 100, "T" * 99 + "U"
    settings = server.settings(write_mapping(tmp_path, f"[tables.{a}]\n[tables.{b}]\n"))
    records = [insert({"Id": 1}, BASE + 1, table=a), insert({"Id": 1}, BASE + 2, table=b)]
    result = Replicator(server.engine, settings).process(records)
    assert result.failed == 0 and result.dead_lettered == 0
    tables = _replica_tables(server)
    assert len(tables) == 2 and all(_fits(server, t) for t in tables)


def test_document_mode_name_collision_is_dead_lettered(server: Target, tmp_path: Path) -> None:
    settings = server.settings(write_mapping(tmp_path, "[defaults]\n"))
    replicator = Replicator(server.engine, settings)
    first = insert({"Id": 1}, BASE + 1, {"v": "Orders"}, table="Orders")
    clash = insert({"Id": 2}, BASE + 2, {"v": "orders"}, table="orders")
    later = modify({"Id": 1}, BASE + 3, {"v": "orders again"}, table="orders")
    result = replicator.process([first, clash])
    assert result.failed == 0 and result.dead_lettered == 1
    result = replicator.process([later])
    assert result.failed == 0 and result.dead_lettered == 1

    with server.engine.connect() as conn:
        orders = server.reflect("orders")
        rows = conn.execute(select(orders.c.id, cast(orders.c.item, Text))).all()
    assert [(int(i), json.loads(item)["v"]) for i, item in rows] == [(1, "Orders")]
    letters = server.dead_letters()
    assert [d["error_class"] for d in letters] == ["name_collision", "name_collision"]
    assert all(d["source_table"] == "orders" for d in letters)
    assert all("Orders" in d["error_message"] and "orders" in d["error_message"] for d in letters)


def test_document_mode_name_collision_survives_a_restart(server: Target, tmp_path: Path) -> None:
    """A cold container that only sees the second source table must not merge it into
    the table the first one created (docs/architecture.md §6: never a merge)."""
    settings = server.settings(write_mapping(tmp_path, "[defaults]\n"))
    first = insert({"Id": 1}, BASE + 1, {"v": "Orders"}, table="Orders")
    assert Replicator(server.engine, settings).process([first]).applied == 1
    clash = insert({"Id": 2}, BASE + 2, {"v": "orders"}, table="orders")
    result = Replicator(server.engine, settings).process([clash])
    assert result.failed == 0
    with server.engine.connect() as conn:
        ids = conn.execute(select(server.reflect("orders").c.id)).scalars().all()
    assert [int(i) for i in ids] == [1]
    assert [d["error_class"] for d in server.dead_letters()] == ["name_collision"]


# --- the mapping file is validated ------------------------------------------------------

TYPED = (
    '[tables.Orders]\nkeys = ["Id"]\n{options}\n[tables.Orders.columns]\nId = "text"\n{columns}\n'
)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (TYPED.format(options='deltes = "hard"', columns=""), ("tables.Orders", "deltes")),
        (
            TYPED.format(options="", columns='Total = { typ = "numeric" }'),
            ("Orders", "Total", "typ"),
        ),
        (
            TYPED.format(options="", columns='Total = { type = "numeric", nullable = false }'),
            ("Orders", "Total", "nullable"),
        ),
        ('[tables.Orders]\nttl_delete = "ignore"\n', ("tables.Orders", "ttl_delete")),
        ('[defaults]\ndeletes = "hard"\nauto_creat = false\n', ("defaults", "auto_creat")),
        ("tabels = 1\n", ("tabels",)),
        ('[tables.Orders]\ndeletes = "hardly"\n', ("tables.Orders", "deletes", "hardly")),
        ('[tables.Orders]\nunmapped = "keep"\n', ("tables.Orders", "unmapped", "keep")),
        (TYPED.format(options="", columns='Total = "money"'), ("Orders", "Total", "money")),
        (
            TYPED.format(options="", columns='Total = "numeric(3,4)"'),
            ("Orders", "Total", "numeric"),
        ),
        (
            TYPED.format(options="", columns='Total = { type = "numeric", format = "epoch_ms" }'),
            ("Orders", "Total", "format"),
        ),
        (
            TYPED.format(options="", columns='At = { type = "timestamptz", format = "epoch_us" }'),
            ("Orders", "At", "epoch_us"),
        ),
        (
            '[tables.Orders]\nkeys = ["Id", "Sk"]\n[tables.Orders.columns]\nId = "text"\n',
            ("Orders", "Sk"),
        ),
        (
            '[tables.Orders]\nkeys = ["Id"]\n[tables.Orders.columns]\nId = "jsonb"\n',
            ("Orders", "Id", "jsonb"),
        ),
        (
            '[tables.Orders]\nkeys = ["Id"]\n[tables.Orders.columns]\nId = "text[]"\n',
            ("Orders", "Id", "text[]"),
        ),
        (
            '[tables.Orders]\nkeys = ["Id"]\n[tables.Orders.columns]\nId = "double"\n',
            ("Orders", "Id", "double"),
        ),
        ('[tables.Orders.columns]\nId = "text"\n', ("Orders", "keys")),
        ("[tables.Orders\n", ("not valid TOML",)),
    ],
    ids=[
        "table-option-typo",
        "column-key-typo",
        "column-unknown-key",
        "document-table-typo",
        "defaults-typo",
        "top-level-typo",
        "bad-deletes",
        "bad-unmapped",
        "unknown-type",
        "impossible-numeric",
        "format-on-numeric",
        "unknown-format",
        "undeclared-key",
        "jsonb-key",
        "array-key",
        "double-key",
        "columns-without-keys",
        "bad-toml",
    ],
)
def test_invalid_mapping_is_an_error_naming_file_table_and_key(
    server: Target, tmp_path: Path, body: str, names: tuple[str, ...]
) -> None:
    path = write_mapping(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        server.settings(path)
    message = str(caught.value)
    assert str(path) in message, message
    for name in names:
        assert name in message, message


def test_example_mapping_is_valid(server: Target) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "mapping.toml"
    settings = server.settings(example)
    orders = settings.tables["Orders"]
    assert orders.typed and orders.options.deletes == "hard"
    assert settings.tables["AuditLog"].options.ttl_deletes == "ignore"
    table = target_metadata(settings, server.dialect).tables[f"{server.schema}.orders"]
    assert [c.name for c in table.primary_key.columns] == ["customer_id", "order_id"]
    assert "city" in table.c and "extra" in table.c
