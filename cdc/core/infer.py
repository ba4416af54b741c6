"""Column types inferred from data (`cdc infer-mapping`, and the new columns of a table
with `drift = "add_columns"`). Pure.

Each top-level attribute's values are observed one by one: which DynamoDB type (or,
from a replica's `item`/`extra`, which JSON type), numbers' digits before and after the
point, strings that are ISO-8601 timestamps or dates, numbers that look like epoch
times (by range and by the attribute's name). A proposal is made only when every
non-NULL value agrees; a mixed attribute has none (it stays in `extra`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cdc.core.naming import snake

# Names that make an integer in the epoch range a time (createdAt, expires, ttl, ...).
# Matched on the snake_case name, so `Format` or `Seat` are no times.
_TIME_NAME = re.compile(r"(?:^|_)(?:at|time|date|ts|timestamp|expires|expiry|ttl|until)$")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", re.ASCII)
_EPOCH_S = (Decimal(10**9), Decimal(4 * 10**9))  # 2001 … 2096
_EPOCH_MS = (Decimal(10**12), Decimal(4 * 10**12))
BIGINT_DIGITS = 18  # every integer of up to 18 digits fits a bigint


@dataclass
class Observed:
    """What one attribute's values looked like."""

    name: str
    present: int = 0  # items holding the attribute, NULL included
    nulls: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # S, N, BOOL, B, SS, NS, BS, M, L
    integer_digits: int = 0  # numbers: most digits before the point
    scale: int = 0  # numbers: most digits after the point
    integers: bool = True  # every number integral
    epoch_s: int = 0  # numbers in the epoch-seconds range
    epoch_ms: int = 0  # numbers in the epoch-milliseconds range
    iso_times: int = 0  # strings that are ISO-8601 timestamps
    iso_dates: int = 0  # strings that are ISO-8601 dates (YYYY-MM-DD)
    string_lists: int = 0  # lists of strings only (a replica's plain form of SS)
    number_lists: int = 0

    def see(self, tag: str, value: Any) -> None:
        self.present += 1
        if tag == "NULL":
            self.nulls += 1
            return
        self.kinds[tag] += 1
        if tag == "N":
            self._number(value)
        elif tag == "S" and isinstance(value, str):
            if _ISO_TIME.match(value) and _parses(datetime.fromisoformat, value):
                self.iso_times += 1
            elif _ISO_DATE.fullmatch(value) and _parses(date.fromisoformat, value):
                self.iso_dates += 1
        elif tag == "L" and isinstance(value, list) and value:
            if all(isinstance(v, str) for v in value):
                self.string_lists += 1
            elif all(isinstance(v, Decimal | int) and not isinstance(v, bool) for v in value):
                self.number_lists += 1

    def _number(self, value: Any) -> None:
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return
        if not number.is_finite():
            return
        normalized = number.normalize()
        exponent = normalized.as_tuple().exponent
        assert isinstance(exponent, int)
        scale = max(0, -exponent)
        self.scale = max(self.scale, scale)
        self.integer_digits = max(self.integer_digits, max(0, normalized.adjusted() + 1))
        if scale:
            self.integers = False
            return
        magnitude = abs(number)
        if _EPOCH_S[0] <= magnitude < _EPOCH_S[1]:
            self.epoch_s += 1
        elif _EPOCH_MS[0] <= magnitude < _EPOCH_MS[1]:
            self.epoch_ms += 1

    @property
    def values(self) -> int:
        return self.present - self.nulls


@dataclass(frozen=True)
class Proposal:
    """A column type for an attribute, with why, or None (`reason` says why not)."""

    type: str | None  # "numeric(7,2)", "timestamptz", ...
    format: str | None = None  # timestamptz: "iso", "epoch_s", "epoch_ms"
    reason: str = ""


def propose(observed: Observed, *, plain: bool = False) -> Proposal:
    """The column type every observed value fits, or none. `plain`: the values came
    from a replica's JSON (sets are lists there, binary is text)."""
    values = observed.values
    if values == 0:
        return Proposal(None, reason="always NULL")
    if len(observed.kinds) > 1:
        mixed = ", ".join(f"{k} in {n}" for k, n in observed.kinds.most_common())
        return Proposal(None, reason=f"mixed types ({mixed})")
    ((kind, _),) = observed.kinds.items()
    if kind == "S":
        if observed.iso_times == values:
            return Proposal("timestamptz", "iso", "ISO-8601 timestamps")
        if observed.iso_dates == values:
            return Proposal("date", reason="ISO-8601 dates")
        return Proposal("text", reason="strings")
    if kind == "N":
        return _number_type(observed)
    if kind == "BOOL":
        return Proposal("boolean", reason="booleans")
    if kind == "B":
        return Proposal("bytea", reason="binary")
    if kind == "SS":
        return Proposal("text[]", reason="string sets")
    if kind == "NS":
        return Proposal("numeric[]", reason="number sets")
    if kind == "L" and plain and observed.string_lists == values:
        return Proposal("text[]", reason="lists of strings (a string set, or a list)")
    if kind == "L" and plain and observed.number_lists == values:
        return Proposal("numeric[]", reason="lists of numbers (a number set, or a list)")
    names = {"M": "maps", "L": "lists", "BS": "binary sets"}
    return Proposal("jsonb", reason=names.get(kind, kind))


def _number_type(observed: Observed) -> Proposal:
    values = observed.values
    name = observed.name
    if observed.integers and _TIME_NAME.search(snake(name)):
        if observed.epoch_s == values:
            return Proposal("timestamptz", "epoch_s", "epoch seconds")
        if observed.epoch_ms == values:
            return Proposal("timestamptz", "epoch_ms", "epoch milliseconds")
    digits = observed.integer_digits
    if observed.integers:
        if digits <= BIGINT_DIGITS:
            return Proposal("bigint", reason=f"integers of up to {max(digits, 1)} digits")
        return Proposal(f"numeric({digits},0)", reason=f"integers of up to {digits} digits")
    precision = max(1, digits + observed.scale)
    return Proposal(
        f"numeric({precision},{observed.scale})",
        reason=f"numbers with up to {digits} digits before and {observed.scale} after the point",
    )


def _parses(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


# --- observing items ---------------------------------------------------------------------


def av_parts(av: Any) -> tuple[str, Any]:
    """(tag, value) of an AttributeValue; ("?", None) for anything else."""
    if isinstance(av, Mapping) and len(av) == 1:
        ((tag, payload),) = av.items()
        if tag == "NULL":
            return "NULL", None
        return str(tag), payload
    return "?", None


def plain_parts(value: Any) -> tuple[str, Any]:
    """(tag, value) of a plain-JSON value, as a replica's `item`/`extra` holds it."""
    if value is None:
        return "NULL", None
    if isinstance(value, bool):
        return "BOOL", value
    if isinstance(value, Decimal | int | float):
        return "N", value
    if isinstance(value, str):
        return "S", value
    if isinstance(value, list):
        return "L", [Decimal(str(v)) if isinstance(v, float) else v for v in value]
    return "M", value


def observe(
    items: Iterable[Mapping[str, Any]], *, plain: bool = False
) -> tuple[int, dict[str, Observed]]:
    """(how many items, each top-level attribute's observations), attributes in order
    of first sight."""
    seen: dict[str, Observed] = {}
    count = 0
    parts = plain_parts if plain else av_parts
    for item in items:
        count += 1
        for name, value in item.items():
            observed = seen.get(name)
            if observed is None:
                observed = seen[name] = Observed(name)
            observed.see(*parts(value))
    return count, seen


def share(part: int, whole: int) -> str:
    """`part of whole (p%)`, p to one decimal below 100."""
    if whole == 0:
        return "0 of 0"
    percent = 100 * part / whole
    shown = f"{percent:.0f}" if percent in (0, 100) or percent >= 99.95 else f"{percent:.1f}"
    if part < whole and shown == "100":
        shown = "99.9"
    return f"{part} of {whole} ({shown}%)"
