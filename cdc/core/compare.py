"""What `cdc verify` reports and the pure comparisons behind it: differences, the
report, stable key sampling, and equality in the plain-JSON sense."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from cdc.core.jsontext import dumps, loads
from cdc.core.numbers import canonical_number

Key = tuple[Any, ...]


@dataclass
class Difference:
    kind: str  # missing | extra | different | unreplicable
    key: dict[str, Any]  # the key in plain JSON, as a person reads it
    attributes: list[str] = field(default_factory=list)  # for "different"
    detail: str | None = None  # for "unreplicable": why the item cannot be applied
    # The replica table, when the source has several (entity routing): None otherwise.
    table: str | None = None

    def describe(self) -> str:
        text = dumps(self.key)
        if self.table:
            text += f" in {self.table}"
        if self.attributes:
            text += ": " + ", ".join(self.attributes)
        if self.detail:
            text += f": {self.detail}"
        return text

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key}
        if self.table:
            out["table"] = self.table
        if self.attributes:
            out["attributes"] = self.attributes
        if self.detail:
            out["detail"] = self.detail
        return out


KINDS = ("missing", "extra", "different", "unreplicable", "kept")


NOT_DIFFERENCES = frozenset({"kept"})  # rows the table's options keep on purpose


@dataclass
class VerifyReport:
    source_table: str
    replica_table: str
    sample: float | None
    source_items: int = 0  # source items compared
    replica_rows: int = 0  # live replica rows checked for being extra
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: dict[str, list[Difference]] = field(default_factory=lambda: {k: [] for k in KINDS})
    rechecked: bool = False
    seconds: float = 0.0

    @property
    def identical(self) -> bool:
        return not any(n for kind, n in self.counts.items() if kind not in NOT_DIFFERENCES)

    def as_json(self) -> dict[str, Any]:
        return {
            "source_table": self.source_table,
            "replica_table": self.replica_table,
            "sample": self.sample,
            "source_items": self.source_items,
            "replica_rows": self.replica_rows,
            "identical": self.identical,
            "rechecked": self.rechecked,
            **self.counts,
            "examples": {k: [d.as_json() for d in v] for k, v in self.examples.items() if v},
            "seconds": round(self.seconds, 3),
        }


T = TypeVar("T")


def _chunks(values: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for value in values:
        chunk.append(value)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _norm_key(key: Sequence[Any]) -> Key:
    """Keys from the database and from records, made comparable (and hashable)."""
    return tuple(bytes(v) if isinstance(v, memoryview | bytearray) else v for v in key)


def _in_sample(key: Key, fraction: float) -> bool:
    """A stable pseudo-random choice of keys: the same keys on every run."""
    text = dumps([canonical_number(v) if isinstance(v, Decimal) else v for v in key])
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def _json(value: Any) -> Any:
    return loads(value) if isinstance(value, str | bytes) else value


def same(a: Any, b: Any) -> bool:
    """Equality in the plain-JSON sense: numbers by value (1.50 == 1.5), but a boolean
    is never a number (Python says True == 1) and types never mix otherwise."""
    return bool(_canonical(a) == _canonical(b))


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | str | bytes | datetime):
        return (type(value).__name__, value)
    if isinstance(value, int | float | Decimal):
        return ("number", Decimal(str(value)) if isinstance(value, float) else Decimal(value))
    if isinstance(value, Mapping):
        return ("object", tuple(sorted((k, _canonical(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("array", tuple(_canonical(v) for v in value))
    return (type(value).__name__, value)
