"""DynamoDB AttributeValue JSON → Python values and the plain-JSON form. Pure, no I/O.

Two decoders share one validation discipline:

* `to_python` gives what boto3's `TypeDeserializer` gives (Decimal, bytes, sets);
* `to_plain` gives the contract's plain-JSON form (README: Replica tables, "Plain JSON
  form"): numbers stay `Decimal` so they are encoded exactly, binary stays base64 text,
  sets become sorted lists.

Both are strict: a value of the wrong shape raises `DecodeError` naming the attribute
path (``NewImage.Address.Lines[2]``). Nothing is guessed, nothing goes through float.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from cdc.core.errors import DecodeError
from cdc.core.numbers import canonical_number

# DynamoDB numbers: up to 38 significant digits, magnitude 1E-130 … 9.9999…E+125.
MAX_DIGITS = 38
MIN_EXPONENT = -130
MAX_EXPONENT = 125
# M and L values nest at most 32 levels deep in DynamoDB (an attribute holding a map or a
# list is level 1). Deeper input is malformed, and refusing it also keeps every recursive
# walk over a value (here, in the mappings, in the JSON encoders) far from Python's and
# the databases' own limits.
MAX_DEPTH = 32
# Decimal() also accepts "NaN", "Infinity", " 1 " and "1_000", and `\d` (like int() and
# Decimal()) accepts every Unicode digit (Arabic-Indic, fullwidth, ...); DynamoDB numbers are ASCII.
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def parse_number(text: object, path: str) -> Decimal:
    """Parse a DynamoDB N value exactly, enforcing DynamoDB's precision and range."""
    if type(text) is not str or _NUMBER.fullmatch(text) is None:
        raise DecodeError(path, f"N value {_show(text)} is not a number")
    try:
        value = Decimal(text)  # the constructor is exact whatever the context precision
    except InvalidOperation:  # an exponent beyond what Decimal can hold
        raise DecodeError(
            path, f"N value {_show(text)} is outside DynamoDB's range 1E-130 to 9.99E+125"
        ) from None
    if not value:
        return value
    if len(text) > MAX_DIGITS:  # cheap pre-check: shorter text cannot hold 39 digits
        significant = "".join(map(str, value.as_tuple().digits)).strip("0")
        if len(significant) > MAX_DIGITS:
            raise DecodeError(
                path, f"N value {_show(text)} has more than {MAX_DIGITS} significant digits"
            )
    adjusted = value.adjusted()
    if not MIN_EXPONENT <= adjusted <= MAX_EXPONENT:
        raise DecodeError(
            path, f"N value {_show(text)} is outside DynamoDB's range 1E-130 to 9.99E+125"
        )
    return value


def parse_binary(text: object, path: str) -> bytes:
    if type(text) is not str:
        raise DecodeError(path, f"B value {_show(text)} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(path, f"B value {_show(text)} is not valid base64") from None


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _split(av: object, path: str) -> tuple[str, Any]:
    """Return (type descriptor, payload) of one AttributeValue."""
    if type(av) is not dict or len(av) != 1:
        raise DecodeError(
            path, f"expected an AttributeValue with exactly one type descriptor, got {_show(av)}"
        )
    for tag, payload in av.items():
        return tag, payload
    raise AssertionError("unreachable")


def _check_str(payload: object, path: str, tag: str = "S") -> str:
    if type(payload) is not str:
        raise DecodeError(path, f"{tag} value {_show(payload)} is not a string")
    if not payload.isascii():
        check_unicode(payload, path)
    return payload


def check_unicode(text: str, path: str) -> None:
    """Reject a lone surrogate ("\\ud800"): JSON parsers let it through, but no
    database can store it and no UTF-8 text can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError(
            path, f"value {_show(text)} is not valid Unicode (a lone surrogate)"
        ) from None


def _check_list(payload: object, path: str, tag: str) -> list[Any]:
    if type(payload) is not list:
        raise DecodeError(path, f"{tag} value {_show(payload)} is not a list")
    return payload


def _check_bool(payload: object, path: str) -> bool:
    if type(payload) is not bool:
        raise DecodeError(path, f"BOOL value {_show(payload)} is not true or false")
    return payload


def _check_null(payload: object, path: str) -> None:
    if payload is not True:
        raise DecodeError(path, f"NULL value {_show(payload)} must be true")


def _check_map(payload: object, path: str) -> dict[str, Any]:
    if type(payload) is not dict:
        raise DecodeError(path, f"M value {_show(payload)} is not an object")
    return payload


Decoder = Callable[[Any, str], Any]


def _make_decoder(plain: bool) -> Callable[[Any, str, int], Any]:
    """Build one recursive decoder; `plain` selects the JSON form over Python values.
    `depth` is the nesting level of the container holding the value (an item: 0)."""

    def decode(av: Any, path: str, depth: int = 0) -> Any:
        tag, payload = _split(av, path)
        if tag == "M" or tag == "L":
            if depth >= MAX_DEPTH:
                raise DecodeError(
                    path, f"{tag} value nested deeper than DynamoDB's {MAX_DEPTH} levels"
                )
            return m(payload, path, depth + 1) if tag == "M" else l_(payload, path, depth + 1)
        handler = handlers.get(tag)
        if handler is None:
            raise DecodeError(path, f"unknown type descriptor {_show(tag)}")
        return handler(payload, path)

    def m(payload: Any, path: str, depth: int) -> dict[str, Any]:
        return {
            _name(k, path): decode(v, f"{path}.{k}", depth)
            for k, v in _check_map(payload, path).items()
        }

    def l_(payload: Any, path: str, depth: int) -> list[Any]:
        return [
            decode(v, f"{path}[{i}]", depth) for i, v in enumerate(_check_list(payload, path, "L"))
        ]

    def ns(payload: Any, path: str) -> Any:
        values = [
            parse_number(v, f"{path}[{i}]") for i, v in enumerate(_check_list(payload, path, "NS"))
        ]
        return unique_numbers(values) if plain else set(values)

    def ss(payload: Any, path: str) -> Any:
        values = [
            _check_str(v, f"{path}[{i}]", "SS")
            for i, v in enumerate(_check_list(payload, path, "SS"))
        ]
        return sorted(set(values)) if plain else set(values)

    def bs(payload: Any, path: str) -> Any:
        items = _check_list(payload, path, "BS")
        decoded = [parse_binary(v, f"{path}[{i}]") for i, v in enumerate(items)]
        return unique_binaries(items, decoded) if plain else set(decoded)

    def b(payload: Any, path: str) -> Any:
        decoded = parse_binary(payload, path)
        return payload if plain else decoded

    handlers: dict[str, Decoder] = {
        "S": _check_str,
        "N": parse_number,
        "B": b,
        "BOOL": _check_bool,
        "NULL": _check_null,
        "SS": ss,
        "NS": ns,
        "BS": bs,
    }
    return decode


# --- sets ---------------------------------------------------------------------------
# DynamoDB never sends a set with two equal members, but hand-written and some SDKs'
# sample events do. Every path decodes them alike, as boto3 does: members that are equal
# values are one member (`1` and `1.0` are one number; two base64 spellings of the same
# bytes are one binary). A member that stands alone keeps its text as delivered, like
# any N or B value; equal members become the one canonical spelling of their value, so
# the result does not depend on their order.


def unique_numbers(values: list[Decimal]) -> list[Decimal]:
    """NS members in plain form: sorted numerically, equal numbers once."""
    out: list[Decimal] = []
    for value in sorted(values):  # stable: equal numbers stay together
        if not out or out[-1] != value:
            out.append(value)
        elif out[-1].as_tuple() != value.as_tuple():  # two spellings of one number
            out[-1] = Decimal(canonical_number(value))
    return out


def unique_binaries(texts: list[str], decoded: list[bytes]) -> list[str]:
    """BS members in plain form: sorted base64 texts, equal bytes once."""
    spellings: dict[bytes, str] = {}
    for text, value in zip(texts, decoded, strict=True):
        if spellings.setdefault(value, text) != text:
            spellings[value] = base64.b64encode(value).decode("ascii")
    return sorted(spellings.values())


_to_plain = _make_decoder(plain=True)
_to_python = _make_decoder(plain=False)


def to_plain(av: Any, path: str = "value") -> Any:
    """One AttributeValue → its plain-JSON form (Decimal numbers, base64 binary)."""
    return _to_plain(av, path, 0)


def to_python(av: Any, path: str = "value") -> Any:
    """One AttributeValue → Python values, as boto3's TypeDeserializer would give."""
    return _to_python(av, path, 0)


def image_to_plain(image: Any, path: str) -> dict[str, Any]:
    """A whole item (NewImage/OldImage) → plain-JSON object."""
    if type(image) is dict:
        try:
            return _fast_map(image)
        except (_Invalid, DecodeError, ValueError):  # ValueError: unpacking, encoding, base64
            pass  # something is wrong: the careful decoder below says exactly what
    return careful_image_to_plain(image, path)


def careful_image_to_plain(image: Any, path: str) -> dict[str, Any]:
    """`image_to_plain` without the fast path: the reference the fast paths must match
    byte for byte, and the decoder whose errors name the attribute path."""
    if type(image) is not dict:
        raise DecodeError(path, f"expected an item object, got {_show(image)}")
    return {_name(name, path): _to_plain(av, f"{path}.{name}", 0) for name, av in image.items()}


# --- the fast path --------------------------------------------------------------------
# The careful decoders above build an attribute path for every value, in case it is
# wrong. This one builds none, dispatches inline, and gives up at the first doubt; the
# caller then runs the careful decoder, whose error names the path. Valid input of
# every type takes only this path. Measured in BENCHMARKS.md against boto3's
# TypeDeserializer.


class _Invalid(Exception):
    pass


def _fast_map(image: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """`depth`: the map's nesting level (an item: 0), as in the careful decoder."""
    out: dict[str, Any] = {}
    for name, av in image.items():
        if not name.isascii():
            name.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError
        if type(av) is not dict:
            raise _Invalid
        (tag,) = av  # ValueError unless exactly one type descriptor
        payload = av[tag]
        if tag == "S" and type(payload) is str and (payload.isascii() or _encodes(payload)):
            out[name] = payload
        elif tag == "N" and type(payload) is str:
            out[name] = fast_number(payload)
        else:
            out[name] = _fast_plain(av, depth)
    return out


def fast_number(text: str) -> Decimal:
    # Within 38 characters a number has at most 38 significant digits; without an
    # exponent it is also within DynamoDB's range: no need to check either.
    if len(text) <= MAX_DIGITS:
        if (text.isdigit() and text.isascii()) or _SIMPLE_NUMBER.fullmatch(text):
            return Decimal(text)
        if _EXPONENT_NUMBER.fullmatch(text):  # not zero: only the range to check
            value = Decimal(text)
            if MIN_EXPONENT <= value.adjusted() <= MAX_EXPONENT:
                return value
    return parse_number(text, "")  # anything else, and every error


_SIMPLE_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_EXPONENT_NUMBER = re.compile(r"-?[1-9][0-9]*(?:\.[0-9]*)?[eE][-+]?[0-9]{1,4}")


def _fast_plain(av: Any, depth: int) -> Any:
    if type(av) is not dict:
        raise _Invalid
    (tag,) = av  # ValueError unless exactly one type descriptor
    payload = av[tag]
    if tag == "S":
        if type(payload) is str and (payload.isascii() or _encodes(payload)):
            return payload
    elif tag == "N":
        if type(payload) is str:
            return fast_number(payload)
    elif tag == "M":
        if type(payload) is dict and depth < MAX_DEPTH:
            return _fast_map(payload, depth + 1)
    elif tag == "L":
        if type(payload) is list and depth < MAX_DEPTH:
            return [_fast_plain(v, depth + 1) for v in payload]
    elif tag == "BOOL":
        if type(payload) is bool:
            return payload
    elif tag == "NULL" and payload is True:
        return None
    elif tag == "B":
        if type(payload) is str:
            _a2b_base64(payload, strict_mode=True)  # binascii.Error (a ValueError) if not
            return payload
    elif tag == "SS":
        return _fast_strings(payload, True)
    elif tag == "NS":
        return unique_numbers(_fast_numbers(payload))
    elif tag == "BS":
        return _fast_binaries(payload)
    raise _Invalid  # anything odd: the careful decoder says what


# Sets, shared by both fast paths: the careful decoder's rules (see "sets" above), with
# no attribute path built. `base64.b64decode(text, validate=True)` is this call, minus
# the str → bytes step that a2b_base64 does itself (and refuses non-ASCII text alike).
_a2b_base64 = binascii.a2b_base64


def _fast_strings(payload: Any, surrogates: bool) -> list[str]:
    """SS members, sorted, each once. `surrogates`: refuse lone surrogates here (the
    JSON path leaves that to orjson, which refuses them too)."""
    if type(payload) is not list:
        raise _Invalid
    for text in payload:
        if type(text) is not str or (surrogates and not text.isascii() and not _encodes(text)):
            raise _Invalid
    return sorted(set(payload))


def _fast_numbers(payload: Any) -> list[Decimal]:
    if type(payload) is not list:
        raise _Invalid
    numbers: list[Decimal] = []
    for text in payload:
        if type(text) is not str:
            raise _Invalid
        numbers.append(fast_number(text))
    return numbers


def _fast_binaries(payload: Any) -> list[str]:
    if type(payload) is not list:
        raise _Invalid
    decoded: list[bytes] = []
    for text in payload:
        if type(text) is not str:
            raise _Invalid
        decoded.append(_a2b_base64(text, strict_mode=True))
    return unique_binaries(payload, decoded)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name(name: str, path: str) -> str:
    """Attribute names are untrusted strings too."""
    if not name.isascii():
        check_unicode(name, f"{path} attribute name")
    return name


def find_nul(value: Any, path: str) -> str | None:
    """Path of the first string (or attribute name) holding U+0000, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                return f"{path}.{k!r}"
            found = find_nul(v, f"{path}.{k}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = find_nul(v, f"{path}[{i}]")
            if found:
                return found
    return None


def map_strings(value: Any, fix: Callable[[str], str]) -> Any:
    """Apply `fix` to every string and attribute name in a plain value."""
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        return {fix(k): map_strings(v, fix) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, fix) for v in value]
    return value
