"""Column types whose storage differs per database but whose meaning does not.

Used by the replica tables and by the alembic migrations alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, String, Text
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler, TypeCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from cdc.core.jsontext import dumps
from cdc.core.numbers import canonical_number
from cdc.core.versions import VERSION_DIGITS

# The width of a version column: a stream generation and a sequence number in one
# integer (cdc/core/versions.py), at most 55 digits; 65 is MySQL's DECIMAL maximum.
SEQUENCE_WIDTH = VERSION_DIGITS
MYSQL_MAX_DECIMAL_DIGITS = 65


class SequenceNumber(TypeDecorator[int]):
    """A version (cdc/core/versions.py: stream generation * 10^40 + sequence number,
    up to 65 decimal digits), compared as an integer.

    Postgres NUMERIC(65,0) and MySQL DECIMAL(65,0) compare exactly. SQLite has no exact
    65-digit number, so the value is stored zero-padded to 65 characters: text order is
    then integer order. (Migration 0005 widened the columns from 40 digits.)
    """

    impl = String(SEQUENCE_WIDTH)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.NUMERIC(SEQUENCE_WIDTH, 0))
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DECIMAL(SEQUENCE_WIDTH, 0))
        return dialect.type_descriptor(String(SEQUENCE_WIDTH))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name in ("postgresql", "mysql", "mariadb"):
            return int(value)
        return f"{int(value):0{SEQUENCE_WIDTH}d}"

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


def exact_collation(dialect: Dialect) -> str:
    """The utf8mb4 collation that compares byte for byte on this MySQL or MariaDB server.

    `utf8mb4_bin` is case-sensitive but PAD SPACE (`'a' = 'a '`), so keys that differ
    only by trailing spaces would be one row. The NO PAD binary collations are exact:
    `utf8mb4_nopad_bin` (MariaDB 10.2+), `utf8mb4_0900_bin` (MySQL 8.0.17+). Before the
    first connection the server is unknown: the URL's name decides (`mariadb://`).
    """
    if getattr(dialect, "is_mariadb", False) or dialect.name == "mariadb":
        return "utf8mb4_nopad_bin"
    version = dialect.server_version_info
    if version is not None and tuple(version[:3]) < (8, 0, 17):
        raise ValueError(
            "cdc needs MySQL 8.0.17 or later (or MariaDB 10.2 or later) for exact key "
            f"comparison (a NO PAD binary collation); this server is {version}"
        )
    return "utf8mb4_0900_bin"


class ExactString(TypeDecorator[str]):
    """Text compared byte for byte, for key and identity columns: `sp`, `sp ` and `SP`
    are three values on every database.

    PostgreSQL's and SQLite's default comparison already is exact; on MySQL and MariaDB
    the column gets the server's NO PAD binary collation (`exact_collation`). The DDL is
    spelled as the server shows it back (with its character set), so comparing the
    mapping with the database finds no difference.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def __repr__(self) -> str:  # what alembic autogenerate writes into a revision
        return f"ExactString({self.length!r})"

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(
                mysql.VARCHAR(self.length, charset="utf8mb4", collation=exact_collation(dialect))
            )
        return dialect.type_descriptor(String(self.length))


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and always returned timezone-aware.

    TIMESTAMPTZ on Postgres; MySQL's DATETIME has no zone (and no fractions unless
    asked), so it gets DATETIME(6) holding naive UTC; SQLite stores text.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if dialect.name == "postgresql":
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class ExactNumber(TypeDecorator[Decimal]):
    """A DynamoDB number kept exactly: NUMERIC(p,s) on Postgres, DECIMAL(p,s) on MySQL
    when it fits; canonical text otherwise (SQLite has no exact type for 38 digits at
    exponent ±125, MySQL's DECIMAL stops at 65 digits)."""

    impl = Text
    cache_ok = True

    def __init__(
        self, precision: int | None = None, scale: int | None = None, *, key: bool = False
    ) -> None:
        super().__init__()
        self.precision = precision
        self.scale = scale
        self.key = key

    def __repr__(self) -> str:  # what alembic autogenerate writes into a revision
        return f"ExactNumber({self.precision!r}, {self.scale!r}, key={self.key!r})"

    def _as_text(self, dialect: Dialect) -> bool:
        if dialect.name == "postgresql":
            return False
        if dialect.name in ("mysql", "mariadb"):
            return self.precision is None or self.precision > MYSQL_MAX_DECIMAL_DIGITS
        return True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.NUMERIC(self.precision, self.scale))
        if not self._as_text(dialect):
            return dialect.type_descriptor(mysql.DECIMAL(self.precision, self.scale or 0))
        if dialect.name in ("mysql", "mariadb"):
            # A key needs a bounded length on MySQL; 160 characters hold any DynamoDB number.
            # Compared exactly, like every key column (ExactString).
            if self.key:
                return ExactString(160).load_dialect_impl(dialect)
            return dialect.type_descriptor(mysql.LONGTEXT())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or not self._as_text(dialect):
            return value
        return canonical_number(Decimal(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class JsonDocument(TypeDecorator[str]):
    """A JSON document, bound and read as JSON text that we encode ourselves, so numbers
    stay exact (a driver's JSON adapter would go through float).

    jsonb on Postgres (the bound text is cast, and read back as text), JSON on
    MySQL/MariaDB, text on SQLite. A value that is not already text is encoded here.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or isinstance(value, str):
            return value
        return dumps(value)

    def bind_expression(self, bindvalue: Any) -> ColumnElement[Any]:
        return _JsonIn(bindvalue)

    def column_expression(self, column: Any) -> ColumnElement[Any]:
        return _JsonOut(column)


class _JsonIn(FunctionElement[str]):
    inherit_cache = True
    type = Text()


class _JsonOut(FunctionElement[str]):
    inherit_cache = True
    type = Text()


def _only_argument(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(next(iter(element.clauses)), **kw))


@compiles(_JsonIn)
def _json_in(element: _JsonIn, compiler: SQLCompiler, **kw: Any) -> str:
    return _only_argument(element, compiler, **kw)


@compiles(_JsonIn, "postgresql")
def _json_in_pg(element: _JsonIn, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({_only_argument(element, compiler, **kw)} AS JSONB)"


@compiles(_JsonOut)
def _json_out(element: _JsonOut, compiler: SQLCompiler, **kw: Any) -> str:
    return _only_argument(element, compiler, **kw)


@compiles(_JsonOut, "postgresql")
def _json_out_pg(element: _JsonOut, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({_only_argument(element, compiler, **kw)} AS TEXT)"


@compiles(JsonDocument, "postgresql")
def _json_ddl_pg(type_: JsonDocument, compiler: TypeCompiler, **kw: Any) -> str:
    return "JSONB"


@compiles(JsonDocument, "mysql")
@compiles(JsonDocument, "mariadb")
def _json_ddl_mysql(type_: JsonDocument, compiler: TypeCompiler, **kw: Any) -> str:
    # MariaDB's JSON is LONGTEXT plus CHECK (JSON_VALID(...)), and JSON_VALID rejects
    # documents nested deeper than 32 levels: a DynamoDB item may nest 32 levels below
    # its attributes, so it would be refused. cdc writes valid JSON itself; the column is
    # plain LONGTEXT (MariaDB's JSON functions work on it all the same).
    if getattr(compiler.dialect, "is_mariadb", False) or compiler.dialect.name == "mariadb":
        return "LONGTEXT"
    return "JSON"
