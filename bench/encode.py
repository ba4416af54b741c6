"""The floors' pre-encoding, and the comparison of final states. Standard library only.

The floors get rows "already encoded": the plain-JSON document of each NewImage is made
here, before the clock starts, independently of cdc (so the final-state check compares
two implementations, not one with itself). The form is the contract's plain JSON, as
README.md describes it: numbers exact (their DynamoDB text), binary as base64 text,
sets as sorted lists, NULL as null.

Final states are compared by value: JSON numbers as Decimal (1.50 equals 1.5), keys and
sequence numbers as numbers, event times as UTC instants, whatever each database
stores them as.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cdc.core.versions import sequence_of

_dump_str = json.JSONEncoder(ensure_ascii=False).encode


def plain_json(image: dict[str, Any]) -> str:
    """A NewImage (AttributeValue map) as plain-JSON text, exactly."""
    return "{" + ",".join(f"{_dump_str(k)}:{_value(v)}" for k, v in image.items()) + "}"


def _value(av: dict[str, Any]) -> str:
    ((tag, payload),) = av.items()
    if tag == "S" or tag == "B":  # binary stays its base64 text
        return _dump_str(payload)
    if tag == "N":
        return _number(payload)
    if tag == "BOOL":
        return "true" if payload else "false"
    if tag == "NULL":
        return "null"
    if tag == "M":
        return plain_json(payload)
    if tag == "L":
        return "[" + ",".join(_value(v) for v in payload) + "]"
    if tag == "SS" or tag == "BS":
        return "[" + ",".join(_dump_str(v) for v in sorted(payload)) + "]"
    if tag == "NS":
        return "[" + ",".join(_number(v) for v in sorted(payload, key=Decimal)) + "]"
    raise ValueError(f"unknown type descriptor {tag!r}")


def _number(text: str) -> str:
    """DynamoDB number text as a JSON number (JSON has no `+1`, `.5` or `5.`)."""
    value = Decimal(text)
    return text if _is_json_number(text) else str(value)


def _is_json_number(text: str) -> bool:
    body = text[1:] if text.startswith("-") else text
    mantissa = body.split("e")[0].split("E")[0]
    return bool(mantissa) and mantissa[0].isdigit() and not mantissa.endswith(".")


def canonical_number(value: Decimal | int) -> str:
    """Text of a number as cdc stores a key where there is no exact numeric type
    (SQLite, MySQL key columns): `100`, `1.5`, never `1E+2` or `1.50`."""
    if isinstance(value, int):
        return str(value)
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


# --- final states ---------------------------------------------------------------------

State = dict[Decimal, tuple[Any, int, bool, datetime]]


def _instant(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def state_of(rows: Iterable[tuple[Any, Any, Any, Any, Any]]) -> State:
    """Rows of (key, item JSON text, sequence, deleted, event time), as any of the
    databases returns them, in a form that compares by value."""
    return {
        Decimal(str(key)): (
            None if item is None else json.loads(item, parse_float=Decimal, parse_int=Decimal),
            # cdc stores versions (generation and sequence, cdc/core/versions.py), the
            # floors bare sequence numbers: compare the sequence part.
            sequence_of(int(seq)),
            bool(deleted),
            _instant(event_time),
        )
        for key, item, seq, deleted, event_time in rows
    }


def differences(a: State, b: State, items: bool = True) -> int:
    """Keys present in one state and not the other, or replicated differently (with
    `items=False`, only the bookkeeping: sequence, deleted flag, event time)."""
    if not items:
        a = {k: (None, *v[1:]) for k, v in a.items()}
        b = {k: (None, *v[1:]) for k, v in b.items()}
    return sum(1 for key in a.keys() | b.keys() if a.get(key) != b.get(key))
