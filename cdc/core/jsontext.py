"""Plain JSON text: the document fast path (AttributeValues straight to JSON text,
byte for byte what the careful path gives), and encoding and parsing with exact numbers."""

from __future__ import annotations

import base64
import re
from decimal import Decimal
from typing import Any

import orjson

from cdc.core.decode import (
    _EXPONENT_NUMBER,
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_EXPONENT,
    MIN_EXPONENT,
    _a2b_base64,
    _fast_binaries,
    _fast_numbers,
    _fast_strings,
    _Invalid,
    careful_image_to_plain,
    fast_number,
    unique_numbers,
)
from cdc.core.errors import DecodeError

# --- the document fast path: AttributeValues straight to JSON text -------------------
# Document mode only needs the item's JSON text, so numbers need not become Decimals:
# a number whose text is already what `str(Decimal(text))` gives goes into the JSON as
# that text (an orjson Fragment), with no Decimal and no encoder callback. orjson itself
# rejects lone surrogates in strings and names, so strings are not checked here. The
# output is byte-for-byte what `dumps(image_to_plain(image))` gives, for every type
# (other numbers go through Decimal, sets as in the plain fast path); only invalid input
# takes the careful path (tests/test_perf_decode.py holds both paths to that).

# Numbers whose text is their canonical Decimal text: no exponent, no leading zeros,
# and no "0.000000…" (Decimal writes an adjusted exponent below -6 as 1E-7).
_CANONICAL_NUMBER = re.compile(r"-?(?:[1-9][0-9]*(?:\.[0-9]+)?|0(?:\.(?!0{6})[0-9]+)?)")
_canonical_number = _CANONICAL_NUMBER.fullmatch
_Fragment = orjson.Fragment


def _json_number(text: Any) -> Any:
    """An N value whose text is not canonical: its Decimal's text. An exponent is what
    makes most of them so (`12E-50`): checked first, as `fast_number` would (within 38
    characters only the range is left to check), without its other regexes."""
    if type(text) is not str:
        raise _Invalid
    if len(text) <= MAX_DIGITS and _exponent_number(text):
        value = Decimal(text)
        if MIN_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
            return _Fragment(str(value))
    return _Fragment(str(fast_number(text)))  # anything else, and every error


_exponent_number = _EXPONENT_NUMBER.fullmatch


def _json_map(image: dict[str, Any], depth: int) -> dict[str, Any]:
    # The common types inline: a call per value is a third of the cost. `depth`: the
    # map's nesting level (an item: 0), as in the careful decoder.
    out: dict[str, Any] = {}
    for name, av in image.items():
        if type(av) is not dict:
            raise _Invalid
        (tag,) = av  # ValueError unless exactly one type descriptor
        payload = av[tag]
        if tag == "S" and type(payload) is str:
            out[name] = payload
        elif tag == "N":
            if (
                # Within 38 characters and without an exponent a number is always
                # within DynamoDB's precision and range.
                type(payload) is str
                and len(payload) <= MAX_DIGITS
                # ASCII digits without a leading zero are canonical: three string
                # methods cost half of the regex, and most numbers are such integers.
                and (
                    (payload.isdigit() and payload.isascii() and payload[0] != "0")
                    or _canonical_number(payload)
                )
            ):
                out[name] = _Fragment(payload)
            else:
                out[name] = _json_number(payload)
        elif tag == "M" and type(payload) is dict and depth < MAX_DEPTH:
            out[name] = _json_map(payload, depth + 1)
        else:
            out[name] = _json_value(tag, payload, depth)
    return out


def _json_list(values: list[Any], depth: int) -> list[Any]:
    out: list[Any] = []
    for av in values:
        if type(av) is not dict:
            raise _Invalid
        (tag,) = av
        payload = av[tag]
        if tag == "S" and type(payload) is str:
            out.append(payload)
        elif tag == "N":
            if (
                type(payload) is str
                and len(payload) <= MAX_DIGITS
                and (
                    (payload.isdigit() and payload.isascii() and payload[0] != "0")
                    or _canonical_number(payload)
                )
            ):
                out.append(_Fragment(payload))
            else:
                out.append(_json_number(payload))
        else:
            out.append(_json_value(tag, payload, depth))
    return out


def _json_value(tag: str, payload: Any, depth: int) -> Any:
    if tag == "M":
        if type(payload) is dict and depth < MAX_DEPTH:
            return _json_map(payload, depth + 1)
    elif tag == "L":
        if type(payload) is list and depth < MAX_DEPTH:
            return _json_list(payload, depth + 1)
    elif tag == "N":
        return _json_number(payload)
    elif tag == "BOOL":
        if type(payload) is bool:
            return payload
    elif tag == "NULL":
        if payload is True:
            return None
    elif tag == "B":
        if type(payload) is str:
            _a2b_base64(payload, strict_mode=True)  # binascii.Error (a ValueError) if not
            return payload
    elif tag == "SS":
        return _fast_strings(payload, False)
    elif tag == "NS":
        return _json_number_set(payload)
    elif tag == "BS":
        return _json_binary_set(payload)
    raise _Invalid  # anything odd: the careful decoder says what


def _json_number_set(payload: Any) -> list[Any]:
    """NS members, as the careful decoder gives them: sorted numerically, equal numbers
    once. Members that are all canonical integers (ASCII digits, no leading zero, 38 at
    most) are equal exactly when their texts are, and `int` sorts them as Decimal does:
    no Decimal is needed, and each member's text is its own."""
    if type(payload) is list:
        integers: set[int] = set()
        for text in payload:
            if not (
                type(text) is str
                and len(text) <= MAX_DIGITS
                and text.isdigit()
                and text.isascii()
                and text[0] != "0"
            ):
                break
            integers.add(int(text))
        else:
            return [_Fragment(str(n)) for n in sorted(integers)]
    return [_Fragment(str(n)) for n in unique_numbers(_fast_numbers(payload))]


def _json_binary_set(payload: Any) -> list[str]:
    """BS members: sorted base64 texts, equal bytes once (`unique_binaries`). Without
    two members of equal bytes that is the texts sorted, with no mapping built."""
    if type(payload) is not list:
        raise _Invalid
    decoded: set[bytes] = set()
    for text in payload:
        if type(text) is not str:
            raise _Invalid
        decoded.add(_a2b_base64(text, strict_mode=True))  # binascii.Error if not base64
    if len(decoded) == len(payload):
        return sorted(payload)
    return _fast_binaries(payload)


def image_to_json(image: Any, path: str) -> str:
    """A whole item (NewImage/OldImage) → its plain-JSON text: `dumps(image_to_plain(
    image, path))`, faster, for when only the text is wanted (document mode)."""
    if type(image) is dict:
        try:
            return orjson.dumps(_json_map(image, 0)).decode("utf-8")
        except (_Invalid, DecodeError, ValueError, TypeError):
            # TypeError: orjson refusing a lone surrogate; ValueError: unpacking, base64
            pass  # the careful decoder below says exactly what is wrong
    return dumps(careful_image_to_plain(image, path))


# --- plain JSON text ----------------------------------------------------------------


def _encode_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Decimal's str is exact and always valid JSON (NaN/Infinity never get here).
        return orjson.Fragment(str(value))
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__} as plain JSON")


def dumps(value: Any) -> str:
    """Encode plain values as compact JSON text, numbers exact."""
    return orjson.dumps(value, default=_encode_default).decode("utf-8")


def dumps_bytes(value: Any) -> bytes:
    return orjson.dumps(value, default=_encode_default)


def loads(text: str | bytes) -> Any:
    """Parse JSON text with exact numbers (Decimal), the inverse of `dumps`."""
    import json

    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


class JsonFloat(float):
    """A float parsed from JSON text that remembers the text (`1e400`, `1.10`), so a
    record written back into a dead letter keeps every number as delivered: a float
    cannot tell `1.10` from `1.1`, and `1e400` is infinite. It is a float everywhere
    else, so the rest of cdc reads the record as Lambda's runtime would parse it."""

    json_text: str

    def __new__(cls, text: str) -> JsonFloat:
        value = super().__new__(cls, text)
        value.json_text = text
        return value


def loads_event(text: str) -> Any:
    """Parse an event as Lambda's Python runtime does (`json.loads`), each non-integer
    number (and NaN, Infinity) a `JsonFloat` keeping its text. Integers are exact."""
    import json

    return json.loads(text, parse_float=JsonFloat, parse_constant=JsonFloat)
