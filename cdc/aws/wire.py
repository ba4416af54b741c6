"""AttributeValues between botocore's form (bytes, Decimal) and the wire form of Lambda
events (base64 text, number strings)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


def to_wire(av: Any) -> Any:
    """One AttributeValue as a Lambda event carries it: binary as base64 text."""
    if not isinstance(av, Mapping) or len(av) != 1:
        return av  # not ours to judge here: the apply path validates and dead-letters
    ((tag, payload),) = av.items()
    if tag == "B" and isinstance(payload, bytes | bytearray):
        return {"B": _b64(payload)}
    if tag == "BS" and isinstance(payload, list):
        return {"BS": [_b64(v) if isinstance(v, bytes | bytearray) else v for v in payload]}
    if tag == "M" and isinstance(payload, Mapping):
        return {"M": image_to_wire(payload)}
    if tag == "L" and isinstance(payload, list):
        return {"L": [to_wire(v) for v in payload]}
    return {tag: payload}


def image_to_wire(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: to_wire(av) for name, av in image.items()}


def from_wire(av: Any) -> Any:
    """The inverse of `to_wire`, for values sent back to AWS (ExclusiveStartKey, Keys):
    given text for a blob, botocore would base64-encode the text itself."""
    if not isinstance(av, Mapping) or len(av) != 1:
        return av
    ((tag, payload),) = av.items()
    if tag == "B" and isinstance(payload, str):
        return {"B": base64.b64decode(payload)}
    if tag == "BS" and isinstance(payload, list):
        return {"BS": [base64.b64decode(v) if isinstance(v, str) else v for v in payload]}
    if tag == "M" and isinstance(payload, Mapping):
        return {"M": image_from_wire(payload)}
    if tag == "L" and isinstance(payload, list):
        return {"L": [from_wire(v) for v in payload]}
    return {tag: payload}


def image_from_wire(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: from_wire(av) for name, av in image.items()}


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


def epoch_seconds(value: datetime) -> int | float:
    """A datetime as Lambda's ApproximateCreationDateTime: epoch seconds (botocore
    parses the API's number into a datetime; Lambda passes the number through)."""
    seconds = value.timestamp()
    return int(seconds) if seconds.is_integer() else seconds
