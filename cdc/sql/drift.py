"""Schema drift: whether a live table can hold what the mapping declares (column
capacities compared per database) and alembic's differences described for a person."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import Dialect


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


# MySQL sizes in bytes; characters of utf8mb4 take up to 4.
_MYSQL_TEXT = {"TINYTEXT": 255, "TEXT": 65_535, "MEDIUMTEXT": 16_777_215, "LONGTEXT": 2**32 - 1}


_MYSQL_BLOB = {"TINYBLOB": 255, "BLOB": 65_535, "MEDIUMBLOB": 16_777_215, "LONGBLOB": 2**32 - 1}


_INTEGERS = {"TINYINT": 1, "SMALLINT": 2, "MEDIUMINT": 3, "INT": 4, "INTEGER": 4, "BIGINT": 8}


_DDL = re.compile(r"(?P<name>[A-Z][A-Z ]*?)\s*(?:\((?P<a>\d+)(?:\s*,\s*(?P<b>\d+))?\))?")


def capacity(ddl: str, dialect_name: str) -> Capacity:
    """The capacity of a column type from its DDL on `dialect_name` (`NUMERIC(12, 2)`,
    `VARCHAR(384) COLLATE utf8mb4_bin`, `DATETIME(6)`, `TEXT[]`)."""
    text = re.sub(r"\s+(COLLATE|CHARACTER SET)\s+\S+", "", ddl.upper()).strip()
    unsigned = " UNSIGNED" in text
    text = text.replace(" UNSIGNED", "").replace(" ZEROFILL", "")
    if text.endswith("[]"):
        element = capacity(text[:-2], dialect_name)
        return Capacity(f"array of {element.family}", element.size, element.scale)
    if dialect_name == "sqlite":
        return Capacity(_sqlite_affinity(text))
    zoned = re.fullmatch(r"TIMESTAMP(?:\((\d+)\))? WITH TIME ZONE", text)
    if zoned is not None:  # PostgreSQL keeps microseconds unless told fewer
        return Capacity("timestamptz", int(zoned[1]) if zoned[1] else 6)
    match = _DDL.fullmatch(text)
    if match is None:
        return Capacity(text)
    name = match["name"]
    a = int(match["a"]) if match["a"] else None
    b = int(match["b"]) if match["b"] else 0
    mysql = dialect_name in ("mysql", "mariadb")
    if name in ("NUMERIC", "DECIMAL"):
        if a is None:  # PostgreSQL: unconstrained; MySQL: DECIMAL(10,0)
            return Capacity("numeric", 10) if mysql else Capacity("numeric", None)
        return Capacity("numeric", a - b, b)
    if mysql and name in ("TINYINT", "BOOL", "BOOLEAN") and (a == 1 or name != "TINYINT"):
        return Capacity("boolean")
    if name in _INTEGERS:
        return Capacity("integer", _INTEGERS[name], unsigned=unsigned)
    if name in ("BOOLEAN", "BOOL"):
        return Capacity("boolean")
    if name in ("DOUBLE PRECISION", "DOUBLE", "FLOAT8") or (name == "FLOAT" and not mysql):
        return Capacity("floating", 8)
    if name in ("REAL", "FLOAT", "FLOAT4"):
        return Capacity("floating", 4)
    if name in ("VARCHAR", "CHAR", "CHARACTER VARYING", "CHARACTER", "NVARCHAR"):
        return Capacity("text", a)
    if name == "TEXT" and not mysql:
        return Capacity("text", None)
    if name in _MYSQL_TEXT:
        return Capacity("text", _MYSQL_TEXT[name] // 4)
    if name in ("BYTEA",):
        return Capacity("binary", None)
    if name in ("VARBINARY", "BINARY"):
        return Capacity("binary", a)
    if name in _MYSQL_BLOB:
        return Capacity("binary", _MYSQL_BLOB[name])
    if name in ("JSON", "JSONB"):
        return Capacity("json")
    if name == "TIMESTAMPTZ":
        return Capacity("timestamptz", 6 if a is None else a)
    if name == "DATETIME" and mysql:
        return Capacity("datetime", a or 0)
    return Capacity(name, a, b)


def _sqlite_affinity(declared: str) -> str:
    """SQLite keeps what a column's affinity makes of a value (sqlite.org/datatype3):
    TEXT '007' in an INTEGER column becomes 7. Types there differ only by affinity."""
    if "INT" in declared:
        return "INTEGER affinity"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT affinity"
    if "BLOB" in declared or not declared:
        return "BLOB affinity"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL affinity"
    return "NUMERIC affinity"


def holds(actual: Capacity, expected: Capacity) -> bool:
    """Whether every value of a column of capacity `expected` fits one of `actual`
    unchanged: no rounding, no cutting, no conversion."""
    if expected.family == "json" and actual.family == "text":
        return actual.size is None or actual.size >= _MYSQL_TEXT["LONGTEXT"] // 4
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
