"""A change's key attributes, validated the same way whatever the source: one or two
attributes (partition and sort key), each S, N or B, never empty. Pure."""

from __future__ import annotations

from typing import Any

from cdc.core.decode import check_unicode, fast_number, parse_binary, parse_number
from cdc.core.errors import DecodeError, MalformedRecord

KEY_TYPES = frozenset({"S", "N", "B"})
MAX_KEY_ATTRIBUTES = 2  # a partition key and an optional sort key


def check_keys(keys: object, where: str = "dynamodb.Keys") -> tuple[dict[str, str], dict[str, Any]]:
    """({name: S | N | B}, {name: str | Decimal | bytes}) of a key map; MalformedRecord or
    DecodeError (both dead-lettered) naming `where` when it is not a DynamoDB key."""
    if not isinstance(keys, dict) or not keys:
        raise MalformedRecord(f"{where} is missing or empty")
    if len(keys) > MAX_KEY_ATTRIBUTES:
        # Before any table is made from them: a replica table keyed on three columns
        # would be wrong for every record of the source table.
        raise MalformedRecord(
            f"{where} has {len(keys)} attributes ({', '.join(map(repr, sorted(keys)))}); "
            "a DynamoDB key has one or two (partition and sort key)"
        )
    key_types: dict[str, str] = {}
    key_values: dict[str, Any] = {}
    for name, av in keys.items():
        key_types[name], key_values[name] = check_key(name, av)
    return key_types, key_values


def check_key(name: str, av: object) -> tuple[str, Any]:
    """(type descriptor, value) of one key attribute, validated: str, Decimal or bytes."""
    if type(av) is dict and len(av) == 1 and name.isascii():  # the common, valid case
        (tag,) = av
        payload = av[tag]
        if tag == "S" and type(payload) is str and payload and payload.isascii():
            return tag, payload
        if tag == "N" and type(payload) is str:
            try:
                return tag, fast_number(payload)
            except DecodeError:
                pass  # the careful path below names the attribute
    return _check_key_carefully(name, av)


def _check_key_carefully(name: str, av: object) -> tuple[str, Any]:
    path = f"Keys.{name}"
    if not isinstance(av, dict) or len(av) != 1:
        raise DecodeError(path, f"expected an AttributeValue with one type descriptor, got {av!r}")
    ((tag, payload),) = av.items()
    if tag not in KEY_TYPES:
        raise DecodeError(path, f"key attributes are S, N or B; got {tag!r}")
    if not name.isascii():
        check_unicode(name, "Keys attribute name")
    if tag == "S":
        if not isinstance(payload, str) or payload == "":
            raise DecodeError(path, f"S key value {payload!r} is not a non-empty string")
        if not payload.isascii():
            check_unicode(payload, path)
        return tag, payload
    if tag == "N":
        return tag, parse_number(payload, path)
    value = parse_binary(payload, path)
    if not value:
        raise DecodeError(path, "B key value is empty; DynamoDB keys are never empty")
    return tag, value
