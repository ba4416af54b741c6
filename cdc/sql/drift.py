"""Schema drift: whether a live table can hold what the mapping declares (column
capacities compared per database) and alembic's differences described for a person."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import Dialect

from cdc.sql.backends.registry import backend_class


@dataclass(frozen=True)
class Capacity:
    """What a column type can hold, for comparing a live column with the mapping's.

    `size`: digits before the point (numeric), bytes (integer, floating point),
    characters (text), bytes (binary), fractional-second digits (datetime); None means
    unbounded. `scale`: digits after the point (numeric).
    """

    family: str
    size: float | None = None
    scale: int = 0
    unsigned: bool = False


_UNBOUNDED = float("inf")


# Characters a text column must hold to take any JSON document (MySQL's LONGTEXT: 4 GB
# of utf8mb4, up to 4 bytes a character).
_ANY_DOCUMENT = (2**32 - 1) // 4


_INTEGERS = {"TINYINT": 1, "SMALLINT": 2, "MEDIUMINT": 3, "INT": 4, "INTEGER": 4, "BIGINT": 8}


_DDL = re.compile(r"(?P<name>[A-Z][A-Z ]*?)\s*(?:\((?P<a>\d+)(?:\s*,\s*(?P<b>\d+))?\))?")


def parse_ddl(text: str) -> tuple[str, int | None, int] | None:
    """(type name, first modifier, second modifier or 0) of an uppercase DDL type."""
    match = _DDL.fullmatch(text)
    if match is None:
        return None
    return match["name"], int(match["a"]) if match["a"] else None, int(match["b"] or 0)


def capacity(ddl: str, dialect_name: str) -> Capacity:
    """The capacity of a column type from its DDL on `dialect_name` (`NUMERIC(12, 2)`,
    `VARCHAR(384) COLLATE utf8mb4_bin`, `DATETIME(6)`, `TEXT[]`): the database's own
    reading first (Backend.column_capacity), then the SQL standard's names."""
    text = re.sub(r"\s+(COLLATE|CHARACTER SET)\s+\S+", "", ddl.upper()).strip()
    unsigned = " UNSIGNED" in text
    text = text.replace(" UNSIGNED", "").replace(" ZEROFILL", "")
    if text.endswith("[]"):
        element = capacity(text[:-2], dialect_name)
        return Capacity(f"array of {element.family}", element.size, element.scale)
    own = backend_class(dialect_name).column_capacity(text)
    if own is not None:
        return own
    zoned = re.fullmatch(r"TIMESTAMP(?:\((\d+)\))? WITH TIME ZONE", text)
    if zoned is not None:  # PostgreSQL keeps microseconds unless told fewer
        return Capacity("timestamptz", int(zoned[1]) if zoned[1] else 6)
    parsed = parse_ddl(text)
    if parsed is None:
        return Capacity(text)
    name, a, b = parsed
    if name in ("NUMERIC", "DECIMAL"):
        if a is None:  # PostgreSQL: unconstrained
            return Capacity("numeric", None)
        return Capacity("numeric", a - b, b)
    if name in _INTEGERS:
        return Capacity("integer", _INTEGERS[name], unsigned=unsigned)
    if name in ("BOOLEAN", "BOOL"):
        return Capacity("boolean")
    if name in ("DOUBLE PRECISION", "DOUBLE", "FLOAT8", "FLOAT"):
        return Capacity("floating", 8)
    if name in ("REAL", "FLOAT", "FLOAT4"):
        return Capacity("floating", 4)
    if name in ("VARCHAR", "CHAR", "CHARACTER VARYING", "CHARACTER", "NVARCHAR"):
        return Capacity("text", a)
    if name == "TEXT":
        return Capacity("text", None)
    if name in ("BYTEA",):
        return Capacity("binary", None)
    if name in ("VARBINARY", "BINARY"):
        return Capacity("binary", a)
    if name in ("JSON", "JSONB"):
        return Capacity("json")
    if name == "TIMESTAMPTZ":
        return Capacity("timestamptz", 6 if a is None else a)
    return Capacity(name, a, b)


def holds(actual: Capacity, expected: Capacity) -> bool:
    """Whether every value of a column of capacity `expected` fits one of `actual`
    unchanged: no rounding, no cutting, no conversion."""
    if expected.family == "json" and actual.family == "text":
        return actual.size is None or actual.size >= _ANY_DOCUMENT
    if expected.family == "boolean" and actual.family == "integer":
        return True
    if actual.family != expected.family or (actual.unsigned and not expected.unsigned):
        return False
    if actual.size is None:  # unbounded (PostgreSQL's TEXT, unconstrained NUMERIC, …)
        return True
    if expected.size is None:
        return False
    return actual.size >= expected.size and actual.scale >= expected.scale


def column_problems(
    table: Table, reflected: Sequence[Mapping[str, Any]], dialect: Dialect
) -> list[str]:
    """How the live columns of `table` (as reflected) fall short of its definition:
    one line per column, naming both types. Empty when every column can hold what the
    mapping promises (a wider column is fine)."""
    live = {c["name"]: c for c in reflected}
    problems = []
    for column in table.columns:
        wanted = column.type.compile(dialect=dialect)
        found = live.get(column.name)
        if found is None:
            problems.append(f"column {column.name!r} ({wanted}) is missing")
            continue
        actual_ddl = found["type"].compile(dialect=dialect)
        expected_ddl = _expected_ddl(column, dialect)
        if not holds(capacity(actual_ddl, dialect.name), capacity(expected_ddl, dialect.name)):
            problems.append(
                f"column {column.name!r} is {actual_ddl} in the database, the mapping "
                f"needs {wanted}"
            )
    return problems


def _expected_ddl(column: Column[Any], dialect: Dialect) -> str:
    """The DDL the column's type renders on `dialect` (JSON documents render as JSON or
    JSONB; MariaDB stores JSON as LONGTEXT, which `holds` accepts)."""
    return str(column.type.compile(dialect=dialect))


def describe_differences(diff: Sequence[Any], dialect: Dialect) -> list[str]:
    """alembic's `compare_metadata` result as one line per difference."""
    lines: list[str] = []
    for entry in diff:
        if isinstance(entry, list):  # column modifications come grouped
            lines.extend(_describe_one(tuple(e), dialect) for e in entry)
        else:
            lines.append(_describe_one(tuple(entry), dialect))
    return lines


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _describe_one(entry: tuple[Any, ...], dialect: Dialect) -> str:
    kind = entry[0]
    if kind in ("add_table", "remove_table"):
        table = entry[1]
        where = _qualified(table.schema, table.name)
        return f"table {where}: " + (
            "in the mapping, missing from the database"
            if kind == "add_table"
            else "in the database, not in the mapping"
        )
    if kind in ("add_column", "remove_column"):
        _, schema, table_name, column = entry
        ddl = column.type.compile(dialect=dialect)
        where = _qualified(schema, table_name)
        return f"table {where}: column {column.name} ({ddl}) " + (
            "is in the mapping, missing from the database"
            if kind == "add_column"
            else "is in the database, not in the mapping"
        )
    if kind == "modify_type":
        _, schema, table_name, column_name, _info, old, new = entry
        return (
            f"table {_qualified(schema, table_name)}: column {column_name} is "
            f"{old.compile(dialect=dialect)} in the database, {new.compile(dialect=dialect)} "
            "in the mapping"
        )
    if kind == "modify_nullable":
        _, schema, table_name, column_name, _info, old, new = entry
        state = {True: "nullable", False: "NOT NULL"}
        return (
            f"table {_qualified(schema, table_name)}: column {column_name} is "
            f"{state.get(old, old)} in the database, {state.get(new, new)} in the mapping"
        )
    if kind in ("add_index", "remove_index"):
        index = entry[1]
        where = _qualified(index.table.schema, index.table.name)
        return f"table {where}: index {index.name} " + (
            "is in the mapping, missing from the database"
            if kind == "add_index"
            else "is in the database, not in the mapping"
        )
    return " ".join(str(part) for part in entry)  # any other kind, as alembic says it
