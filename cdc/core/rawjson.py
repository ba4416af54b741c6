"""Storing a raw record that may not be valid JSON text (NUL, lone surrogates,
non-finite floats) so a dead letter keeps it losslessly."""

from __future__ import annotations

import base64
import json
import math
import re
import reprlib
from decimal import Decimal
from typing import Any

import orjson

from cdc.core.jsontext import JsonFloat

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str | None, limit: int | None = None) -> str | None:
    """`text` as any database can store it in a text column, cut to `limit`
    characters: U+0000 (PostgreSQL refuses it) and lone surrogates (no UTF-8 text can
    hold them) become their JSON escapes, `\u0000` and `\ud800`."""
    if text is None:
        return None
    if not text.isascii() or "\x00" in text:
        text = _UNSTORABLE.sub(_escape, text)
    return text if limit is None else text[:limit]


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def raw_json(record: Any) -> str:
    """The record as delivered, as JSON text; never fails (it must reach the table).

    Lossless: `json.loads` of the text (how Lambda's Python runtime parses an event,
    and how `cdc dlq redrive` reads a letter) gives back the record exactly. A number
    parsed by `cdc replay` keeps its text (`1.10`, `1e400`: see `JsonFloat`); a float
    without its text is written so that it reads back as the same float (an infinite
    one as `1e400`, NaN as `NaN`, as Python's json module reads them); a lone
    surrogate is written as its `\ud800` escape. The text is always storable.
    """
    try:
        text = orjson.dumps(record, default=_raw_default)
    except TypeError:  # a lone surrogate, a foreign object, nesting orjson refuses
        return _careful_json(record)
    if b"null" in text and _has_nonfinite(record):  # orjson writes inf and NaN as null
        return _careful_json(record)
    return text.decode("utf-8")


def _raw_default(value: Any) -> Any:
    if isinstance(value, JsonFloat):
        return orjson.Fragment(value.json_text)
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _has_nonfinite(value: Any) -> bool:
    if type(value) is float:
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_nonfinite(v) for v in value)
    return False


def _careful_json(record: Any) -> str:
    try:
        return _lossless_json(record)
    except RecursionError:
        # Nested deeper than Python's json module (so Lambda's runtime) parses: this
        # record cannot have been delivered as JSON. Keep what can be shown of it.
        return json.dumps({"unserializable_record": reprlib.repr(record)})


def _lossless_json(value: Any) -> str:
    parts: list[str] = []
    _write_json(value, parts)
    return "".join(parts)


def _write_json(value: Any, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, str):
        out.append(_json_string(value))
    elif isinstance(value, JsonFloat):
        out.append(value.json_text)
    elif isinstance(value, float):
        out.append(_float_text(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, Decimal):
        out.append(str(value) if value.is_finite() else _float_text(float(value)))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_json_string(key if isinstance(key, str) else str(key)))
            out.append(":")
            _write_json(item, out)
        out.append("}")
    elif isinstance(value, list | tuple | set | frozenset):
        if isinstance(value, set | frozenset):
            try:
                value = sorted(value)
            except TypeError:
                value = list(value)
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write_json(item, out)
        out.append("]")
    elif isinstance(value, bytes | bytearray):
        out.append(_json_string(base64.b64encode(value).decode("ascii")))
    else:
        out.append(_json_string(repr(value)))


def _json_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    if not text.isascii():
        encoded = _SURROGATE.sub(_escape, encoded)  # escapes are ASCII: only raw ones match
    return encoded


_SURROGATE = re.compile("[\ud800-\udfff]")


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "1e400" if value > 0 else "-1e400"
    return float.__repr__(value)
