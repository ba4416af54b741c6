"""Attributes kept out of the replica (README: The mapping file, "Personal data"). Pure.

Per attribute (a top-level name or a `Parent.Child` path) of a source table:

* `exclude = true`: never stored. Removed from the image before anything is built from
  it (typed columns, `item`, `extra`), and from the raw record a dead letter keeps.
* `hash = "hmac-sha256"`: stored as the hex HMAC-SHA256 of the value under a key from
  the configuration (CDC_HASH_KEY or CDC_HASH_KEY_SECRET_ARN), so equal identifiers
  still join, across tables too, while the value itself is not stored. A dead letter
  keeps the digest in a marker map (`{"M": {"cdc:hmac-sha256": {"S": hex}}}`) that the
  replicator takes as already hashed, so `cdc dlq redrive` stores the same digest.

Key attributes can be neither: the key names the row in cdc's own bookkeeping (the
dead letters' `keys`, the tombstones, `cdc dlq redrive`), which must be able to find it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from cdc.core.decode import parse_binary, parse_number
from cdc.core.errors import ConfigError, RecordError
from cdc.core.jsontext import dumps
from cdc.core.numbers import canonical_number

Action = Literal["exclude", "hash"]
HASHES = ("hmac-sha256",)
HASH_MARKER = "cdc:hmac-sha256"  # the marker map a dead letter keeps a digest in
# Where the images are in the raw records cdc dead-letters: a stream record's
# `dynamodb` (NewImage, OldImage) and a snapshot envelope's `Item`.
_IMAGE_FIELDS = ("NewImage", "OldImage", "Item")


class HashKey:
    """The HMAC key, read once on first use (never printed). `load` returns the key
    text; the settings make it from CDC_HASH_KEY, or the app layer from a secret."""

    def __init__(
        self, describe: str, load: Callable[[], str] | None, *, secret_arn: str | None = None
    ) -> None:
        self.describe = describe  # which setting, for errors; never the key
        self.secret_arn = secret_arn  # read by the entry points, which know AWS
        self._load = load
        self._key: bytes | None = None

    def use(self, load: Callable[[], str]) -> None:
        """Where the key comes from (a secret: set by cdc/app/engines.py)."""
        self._load = load
        self._key = None

    def get(self) -> bytes:
        if self._key is None:
            if self._load is None:
                raise ConfigError(f"hashing needs a key: set {self.describe}")
            text = self._load()
            if len(text.encode("utf-8")) < 16:
                raise ConfigError(f"the hash key ({self.describe}) must be at least 16 bytes")
            self._key = text.encode("utf-8")
        return self._key

    def __repr__(self) -> str:  # never the key
        return f"HashKey({self.describe})"


@dataclass(frozen=True)
class AttributeRule:
    attribute: str  # as written: "Email", "Contact.Phone"
    action: Action

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.attribute.split("."))


@dataclass(frozen=True, eq=False)
class Personal:
    """A table's attribute rules and the key its hashes use."""

    rules: tuple[AttributeRule, ...]
    key: HashKey

    @property
    def excluded(self) -> frozenset[str]:
        return frozenset(r.attribute for r in self.rules if r.action == "exclude")

    @property
    def hashed(self) -> frozenset[str]:
        return frozenset(r.attribute for r in self.rules if r.action == "hash")

    def apply(self, image: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The image as cdc may store it: excluded attributes removed, hashed ones
        replaced by `{"S": hex digest}`. The input is not changed."""
        return _rewrite(image, self.rules, lambda av, path: {"S": self._digest(av, path)}, where)

    def redact(self, image: Mapping[str, Any]) -> dict[str, Any]:
        """The image as a dead letter keeps it: excluded attributes removed, hashed ones
        in the marker map; a value too broken to hash is removed."""

        def marked(av: Any, path: str) -> Any:
            try:
                return {"M": {HASH_MARKER: {"S": self._digest(av, path)}}}
            except RecordError:
                return None

        return _rewrite(image, self.rules, marked, "Item")

    def redact_record(self, record: Any) -> Any:
        """A raw record (a stream record, a snapshot envelope, a Kinesis record whose
        change is base64 JSON in `kinesis.data`) with every image in it redacted.
        Anything it does not recognise is returned as it is, but Kinesis data that
        cannot be read is dropped: it cannot be redacted, and it may hold the values."""
        if not isinstance(record, dict):
            return record
        out = dict(record)
        for name, value in record.items():
            if name in _IMAGE_FIELDS and isinstance(value, dict):
                out[name] = self.redact(value)
            elif name == "dynamodb" and isinstance(value, dict):
                out[name] = self.redact_record(value)
            elif name == "kinesis" and isinstance(value, dict) and "data" in value:
                out[name] = {**value, "data": self._redact_kinesis_data(value["data"])}
        return out

    def _redact_kinesis_data(self, data: Any) -> str | None:
        try:
            change = orjson.loads(base64.b64decode(data, validate=True))
        except (TypeError, ValueError):
            return None
        if not isinstance(change, dict):
            return None
        return base64.b64encode(orjson.dumps(self.redact_record(change))).decode("ascii")

    def _digest(self, av: Any, path: str) -> str:
        marked = _marked_digest(av)
        if marked is not None:
            return marked
        try:
            data = _hash_input(av, path)
        except RecordError:  # its message may quote the value, which must not be kept
            raise RecordError(
                f"{path} is not a valid AttributeValue; it cannot be hashed", kind="decode"
            ) from None
        return hmac.new(self.key.get(), data, hashlib.sha256).hexdigest()


def _rewrite(
    image: Mapping[str, Any],
    rules: tuple[AttributeRule, ...],
    hashed: Callable[[Any, str], Any],
    where: str,
) -> dict[str, Any]:
    out = dict(image)
    # Children before their parent: "A.B" excluded, then "A" hashed without it.
    for rule in sorted(rules, key=lambda r: -len(r.path)):
        _rewrite_path(out, rule.path, rule.action, hashed, f"{where}.{rule.attribute}")
    return out


def _rewrite_path(
    image: dict[str, Any],
    path: tuple[str, ...],
    action: Action,
    hashed: Callable[[Any, str], Any],
    where: str,
) -> None:
    head = path[0]
    if head not in image:
        return
    if len(path) > 1:
        av = image[head]
        if isinstance(av, dict) and isinstance(av.get("M"), dict) and len(av) == 1:
            inner = dict(av["M"])
            _rewrite_path(inner, path[1:], action, hashed, where)
            image[head] = {"M": inner}
        return
    av = image[head]
    if action == "exclude":
        del image[head]
        return
    if isinstance(av, dict) and av.get("NULL") is True:
        return
    value = hashed(av, where)
    if value is None:
        del image[head]
    else:
        image[head] = value


def _marked_digest(av: Any) -> str | None:
    if isinstance(av, dict) and len(av) == 1 and isinstance(av.get("M"), dict):
        inner = av["M"]
        if len(inner) == 1 and isinstance(inner.get(HASH_MARKER), dict):
            text = inner[HASH_MARKER].get("S")
            if isinstance(text, str) and len(text) == 64:
                return text
    return None


def _hash_input(av: Any, path: str) -> bytes:
    """The bytes hashed for a value: a string's UTF-8, a number's canonical text (1.0
    and 1 are one number), binary's bytes, anything else its plain JSON (sorted)."""
    if not isinstance(av, dict) or len(av) != 1:
        raise RecordError(f"{path} is not an AttributeValue; it cannot be hashed", kind="decode")
    ((tag, payload),) = av.items()
    if tag == "S" and isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    if tag == "N":
        return canonical_number(parse_number(payload, path)).encode("ascii")
    if tag == "B":
        return parse_binary(payload, path)
    from cdc.core.decode import to_plain

    return dumps(_sorted(to_plain(av, path))).encode("utf-8", "surrogatepass")


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value
