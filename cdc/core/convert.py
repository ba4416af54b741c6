"""Typed columns: DynamoDB AttributeValues → column values, strictly. Pure.

A value that does not fit its column is a permanent per-record error naming the column,
the attribute and the value; nothing is coerced silently (no rounding of numerics, no
truncation, no text into numbers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from cdc.core.decode import parse_binary, parse_number, to_plain
from cdc.core.errors import DecodeError, RecordError
from cdc.core.jsontext import dumps
from cdc.core.numbers import EXACT

KINDS = (
    "text",
    "numeric",
    "bigint",
    "integer",
    "smallint",
    "boolean",
    "double",
    "timestamptz",
    "date",
    "jsonb",
    "bytea",
    "text[]",
    "numeric[]",
)
TIME_FORMATS = ("auto", "iso", "epoch_s", "epoch_ms")
# ASCII only: `\d` alone matches every Unicode digit (fullwidth, Arabic-Indic, ...).
_NUMERIC = re.compile(r"numeric\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", re.ASCII)
_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_ALIASES = {
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "bool": "boolean",
    "float8": "double",
    "double precision": "double",
    "timestamp": "timestamptz",
    "json": "jsonb",
    "string": "text",
    "binary": "bytea",
    "decimal": "numeric",
}


@dataclass(frozen=True)
class ColumnType:
    kind: str
    precision: int | None = None
    scale: int | None = None

    def __str__(self) -> str:
        if self.precision is None:
            return self.kind
        return f"{self.kind}({self.precision},{self.scale or 0})"


def parse_type(text: str) -> ColumnType:
    """`numeric(12,2)`, `bigint`, `text[]`, ... (case-insensitive)."""
    spec = " ".join(text.strip().lower().split())
    match = _NUMERIC.fullmatch(spec)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2) or 0)
        if not 1 <= precision <= 1000 or scale > precision:
            raise ValueError(
                f"numeric({precision},{scale}) needs 1 <= precision <= 1000 and scale <= precision"
            )
        return ColumnType("numeric", precision, scale)
    spec = _ALIASES.get(spec, spec)
    if spec not in KINDS:
        raise ValueError(f"unknown column type {text!r}; known: {', '.join(KINDS)}, numeric(p,s)")
    return ColumnType(spec)


class ConversionError(RecordError):
    kind = "conversion"


Converter = Callable[[Any, str], Any]


def converter(column: str, ctype: ColumnType, time_format: str = "auto") -> Converter:
    """A function (AttributeValue, attribute path) → value for `column`."""

    def fail(path: str, av: Any, why: str) -> ConversionError:
        shown = repr(av)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return ConversionError(
            f"column {column!r} ({ctype}) cannot hold attribute {path} = {shown}: {why}"
        )

    def tag_of(av: Any, path: str) -> tuple[str, Any]:
        if type(av) is not dict or len(av) != 1:
            raise DecodeError(
                path, f"expected an AttributeValue with one type descriptor, got {av!r}"
            )
        ((tag, payload),) = av.items()
        return tag, payload

    kind = ctype.kind

    def convert(av: Any, path: str) -> Any:
        tag, payload = tag_of(av, path)
        if tag == "NULL":
            to_plain(av, path)  # validates {"NULL": true}
            return None
        if kind == "jsonb":
            return dumps(to_plain(av, path))
        if kind == "text":
            if tag != "S":
                raise fail(path, av, "expected a string (S)")
            return to_plain(av, path)
        if kind in ("numeric", "bigint", "integer", "smallint", "double"):
            if tag != "N":
                raise fail(path, av, "expected a number (N)")
            return _number(
                parse_number(payload, path), kind, ctype, lambda why: fail(path, av, why)
            )
        if kind == "boolean":
            if tag != "BOOL":
                raise fail(path, av, "expected a boolean (BOOL)")
            return to_plain(av, path)
        if kind == "bytea":
            if tag != "B":
                raise fail(path, av, "expected binary (B)")
            return parse_binary(payload, path)
        if kind == "timestamptz":
            return _timestamp(tag, payload, path, time_format, lambda why: fail(path, av, why))
        if kind == "date":
            if tag != "S":
                raise fail(path, av, "expected an ISO-8601 date string (S)")
            try:
                return date.fromisoformat(payload)
            except (TypeError, ValueError):
                raise fail(path, av, "not an ISO-8601 date (YYYY-MM-DD)") from None
        if kind == "text[]":
            if tag in ("SS", "L"):  # decoded first: a malformed value is a decode error
                values = to_plain(av, path)
                if all(type(v) is str for v in values):
                    return values
            raise fail(path, av, "expected a string set (SS) or a list of strings")
        if kind == "numeric[]":
            if tag in ("NS", "L"):
                values = to_plain(av, path)
                if all(type(v) is Decimal for v in values):
                    return values
            raise fail(path, av, "expected a number set (NS) or a list of numbers")
        raise AssertionError(f"unhandled column kind {kind}")

    return convert


def _number(
    value: Decimal, kind: str, ctype: ColumnType, fail: Callable[[str], ConversionError]
) -> Any:
    if kind == "double":
        result = float(value)
        if result in (float("inf"), float("-inf")):
            raise fail("out of range for double precision")
        return result
    if kind in _INT_RANGES:
        if value != value.to_integral_value(context=EXACT):
            raise fail("not an integer")
        low, high = _INT_RANGES[kind]
        integer = int(value)
        if not low <= integer <= high:
            raise fail(f"out of range for {kind}")
        return integer
    if ctype.precision is not None:
        scale = ctype.scale or 0
        normalized = value.normalize(EXACT)
        exponent = normalized.as_tuple().exponent
        assert isinstance(exponent, int)
        if -exponent > scale:
            raise fail(f"more than {scale} decimal places (it would be rounded)")
        integer_digits = max(0, normalized.adjusted() + 1)
        if integer_digits > ctype.precision - scale:
            raise fail(f"more than {ctype.precision - scale} digits before the decimal point")
    return value


def _timestamp(
    tag: str, payload: Any, path: str, time_format: str, fail: Callable[[str], ConversionError]
) -> datetime:
    if tag == "S" and time_format in ("auto", "iso"):
        text = payload
        try:
            parsed = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            raise fail("not an ISO-8601 timestamp") from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if tag == "N" and time_format in ("auto", "epoch_s", "epoch_ms"):
        number = parse_number(payload, path)
        millis = time_format == "epoch_ms" or (
            time_format == "auto" and abs(number) >= Decimal(10) ** 11
        )
        seconds = number / 1000 if millis else number
        try:
            return datetime.fromtimestamp(float(seconds), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise fail("epoch time out of range") from None
    expected = {
        "iso": "an ISO-8601 string (S)",
        "epoch_s": "epoch seconds (N)",
        "epoch_ms": "epoch milliseconds (N)",
    }.get(time_format, "an ISO-8601 string (S) or epoch seconds/milliseconds (N)")
    raise fail(f"expected {expected}")
