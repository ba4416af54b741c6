"""Column types whose storage differs per database but whose meaning does not.

Used by the replica tables and by the alembic migrations alike. What each database
stores is its backend's choice (the column-type hooks of cdc/sql/backends/capabilities.py,
found by the SQLAlchemy dialect's name); these types only say what a value means.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from cdc.core.jsontext import dumps
from cdc.core.numbers import canonical_number
from cdc.core.versions import VERSION_DIGITS
from cdc.sql.backends.registry import backend_class

# The width of a version column: a stream generation and a sequence number in one
# integer (cdc/core/versions.py), at most 55 digits; 65 is MySQL's DECIMAL maximum.
SEQUENCE_WIDTH = VERSION_DIGITS


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
        return dialect.type_descriptor(backend_class(dialect.name).sequence_type(SEQUENCE_WIDTH))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not backend_class(dialect.name).sequences_as_text:
            return int(value)
        return f"{int(value):0{SEQUENCE_WIDTH}d}"

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class ExactString(TypeDecorator[str]):
    """Text compared byte for byte, for key and identity columns: `sp`, `sp ` and `SP`
    are three values on every database.

    PostgreSQL's and SQLite's default comparison already is exact; on MySQL and MariaDB
    the column gets the server's NO PAD binary collation (`exact_collation` of the MySQL
    backend). The DDL is spelled as the server shows it back (with its character set),
    so comparing the mapping with the database finds no difference.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def __repr__(self) -> str:  # what alembic autogenerate writes into a revision
        return f"ExactString({self.length!r})"

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        backend = backend_class(dialect.name)
        return dialect.type_descriptor(backend.exact_string_type(dialect, self.length))


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and always returned timezone-aware.

    TIMESTAMPTZ on Postgres; MySQL's DATETIME has no zone (and no fractions unless
    asked), so it gets DATETIME(6) holding naive UTC; SQLite stores text.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(backend_class(dialect.name).utc_datetime_type())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if backend_class(dialect.name).binds_aware_datetimes:
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
        return backend_class(dialect.name).numbers_as_text(self.precision)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        backend = backend_class(dialect.name)
        column = backend.exact_number_type(dialect, self.precision, self.scale, self.key)
        return dialect.type_descriptor(column)

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
        return JsonIn(bindvalue)

    def column_expression(self, column: Any) -> ColumnElement[Any]:
        return JsonOut(column)


class JsonIn(FunctionElement[str]):
    inherit_cache = True
    type = Text()


class JsonOut(FunctionElement[str]):
    inherit_cache = True
    type = Text()


def only_argument(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(next(iter(element.clauses)), **kw))


@compiles(JsonIn)
def _json_in(element: JsonIn, compiler: SQLCompiler, **kw: Any) -> str:
    return only_argument(element, compiler, **kw)


@compiles(JsonOut)
def _json_out(element: JsonOut, compiler: SQLCompiler, **kw: Any) -> str:
    return only_argument(element, compiler, **kw)
