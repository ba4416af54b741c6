"""The column types under their historical name: migration revisions (the shipped ones and
the ones `cdc revision` writes, README: Migrations) refer to them as `cdc.types.X`. They
live in cdc/sql/types.py (and the exact number context in cdc/core/numbers.py); the
MySQL-only names in the MySQL backend."""

from cdc.core.numbers import EXACT, canonical_number
from cdc.sql.backends.mysql.session import MAX_DECIMAL_DIGITS as MYSQL_MAX_DECIMAL_DIGITS
from cdc.sql.backends.mysql.session import exact_collation
from cdc.sql.types import (
    SEQUENCE_WIDTH,
    ExactNumber,
    ExactString,
    JsonDocument,
    SequenceNumber,
    UtcDateTime,
)

__all__ = [
    "EXACT",
    "MYSQL_MAX_DECIMAL_DIGITS",
    "SEQUENCE_WIDTH",
    "ExactNumber",
    "ExactString",
    "JsonDocument",
    "SequenceNumber",
    "UtcDateTime",
    "canonical_number",
    "exact_collation",
]
