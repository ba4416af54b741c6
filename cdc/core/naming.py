"""Source names → database identifiers. Pure.

`snake()` conforms DynamoDB table and attribute names; `fit()` cuts an identifier to
the database's limit with a short, deterministic hash suffix; `NameTable` catches two
source names that land on one identifier, which would otherwise merge silently.
"""

from __future__ import annotations

import hashlib
import re

from cdc.core.errors import NameCollision

_NON_WORD = re.compile(r"[^0-9A-Za-z]+")
_LOWER_UPPER = re.compile(r"([a-z0-9])([A-Z])")
_ACRONYM_WORD = re.compile(r"([A-Z]+)([A-Z][a-z])")
_UNDERSCORES = re.compile(r"_+")

HASH_LENGTH = 8


def snake(name: str) -> str:
    """`ExampleTableWithStream` → `example_table_with_stream`, `userID` → `user_id`,
    `order-items.v2` → `order_items_v2`, `HTTPServer` → `http_server`.

    Anything outside [A-Za-z0-9] separates words. A name with no such character left
    becomes `x_<hash>` so it is still a stable, distinct identifier.
    """
    words = _NON_WORD.sub("_", name)
    words = _ACRONYM_WORD.sub(r"\1_\2", words)
    words = _LOWER_UPPER.sub(r"\1_\2", words)
    conformed = _UNDERSCORES.sub("_", words).strip("_").lower()
    return conformed or f"x_{short_hash(name)}"


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]


def fit(identifier: str, max_bytes: int, source: str | None = None) -> str:
    """Cut `identifier` to `max_bytes` (UTF-8) and add `_<hash of source>`.

    The hash is of the *source* name, so two long names sharing a prefix stay distinct,
    and the result is the same on every run.
    """
    if len(identifier.encode("utf-8")) <= max_bytes:
        return identifier
    suffix = "_" + short_hash(source if source is not None else identifier)
    budget = max_bytes - len(suffix)
    cut = identifier.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip("_")
    return cut + suffix


class NameTable:
    """Identifiers already given out in one namespace (a schema's tables, a table's
    columns), with the source name each came from."""

    def __init__(self, what: str, reserved: dict[str, str] | None = None) -> None:
        self.what = what
        self._owners: dict[str, str] = dict(reserved or {})

    def claim(self, identifier: str, source: str) -> str:
        owner = self._owners.setdefault(identifier, source)
        if owner != source:
            raise NameCollision(
                f"{self.what} {source!r} and {owner!r} both map to the identifier "
                f"{identifier!r}; rename one in the mapping file"
            )
        return identifier
