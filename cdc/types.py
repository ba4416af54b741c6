"""Column types whose storage differs per database but whose meaning does not.

Used by the replica tables and by the alembic migrations alike.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, String, Text
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

SEQUENCE_WIDTH = 40


class SequenceNumber(TypeDecorator[int]):
    """A stream sequence number (up to 40 decimal digits), compared as an integer.

    Postgres NUMERIC(40,0) and MySQL DECIMAL(40,0) compare exactly. SQLite has no exact
    40-digit number, so the value is stored zero-padded to 40 characters: text order is
    then integer order.
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


class KeyNumber(TypeDecorator[Decimal]):
    """A DynamoDB number used as a key: NUMERIC on Postgres; canonical text elsewhere,
    because SQLite and MySQL have no exact type for 38 digits at exponent ±125."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.NUMERIC())
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(String(160))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return canonical_number(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def canonical_number(value: Decimal) -> str:
    """One text per numeric value: `100`, `1.5`, `0.001`, never `1E+2` or `1.50`."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


class JsonDocument(TypeDecorator[str]):
    """A JSON document bound as JSON text we encoded ourselves (numbers exact).

    jsonb on Postgres, JSON on MySQL/MariaDB, text on SQLite. The statement builders
    cast the bound text to the column type where the database needs it.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return postgresql.JSONB()
        if dialect.name in ("mysql", "mariadb"):
            return mysql.JSON()
        return Text()


