"""Entity table keys back to source keys (`cdc verify`, README: "Single-table designs").

An entity table stores the key columns parsed out of the DynamoDB key (the named groups
of its key patterns), not the key itself. A pattern whose text outside its named groups
is literal (`CUSTOMER#(?P<customer_id>\\d+)`, `PROFILE`) can be run backwards: the
groups' values written back in their places give the key attribute's text. Any other
pattern (an alternation, a class, a quantifier outside a group) is not invertible: its
rows cannot name their source key. Every key built is checked by parsing it again: it
must give back the very group texts it was built from. Pure (no connection).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cdc.core.entities import EntityConfig

_SPECIAL = set(".^$*+?{}[]|()")


@dataclass(frozen=True)
class _Group:
    name: str


_Part = str | _Group


def template(pattern: str) -> tuple[tuple[_Part, ...] | None, str | None]:
    """The pattern as literal texts and named groups, or (None, why it is not
    invertible)."""
    parts: list[_Part] = []
    literal: list[str] = []
    start, end = 0, len(pattern)
    if pattern.startswith("^"):
        start = 1
    if end > start and pattern.endswith("$") and _unescaped(pattern, end - 1):
        end -= 1
    i = start
    while i < end:
        char = pattern[i]
        if char == "\\":
            following = pattern[i + 1] if i + 1 < end else ""
            if not following or following.isalnum():
                return None, f"escape \\{following} outside a named group"
            literal.append(following)
            i += 2
            continue
        if pattern.startswith("(?P<", i):
            close = pattern.find(">", i)
            group_end = _group_end(pattern, close + 1, end) if close > 0 else None
            if group_end is None:
                return None, "an unbalanced group"
            if group_end + 1 < end and pattern[group_end + 1] in "*+?{":
                return None, "a quantified named group"
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_Group(pattern[i + 4 : close]))
            i = group_end + 1
            continue
        if char in _SPECIAL:
            return None, f"{char!r} outside a named group"
        literal.append(char)
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts), None


def _unescaped(pattern: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and pattern[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 0


def _group_end(pattern: str, i: int, end: int) -> int | None:
    """The index of the ')' closing the group whose body starts at `i`."""
    depth = 1
    in_class = False
    while i < end:
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern.startswith("]", i + 1) or pattern.startswith("^]", i + 1):
                i += 2 if pattern[i + 1] == "]" else 3
                continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _group_text(value: Any) -> str | None:
    """A key column's value as the text the key held (checked by parsing it again)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return None


class SourceKeys:
    """An entity's key columns back to the source key: `source_key(values)` (the key
    columns' values, in the table's order) gives the key attributes (AttributeValues,
    typed as `tags`, the source table's key types, say: S or N), or None for values no
    key of the patterns gives. `why_not` says why the patterns cannot be run backwards
    at all (then `source_key` is always None)."""

    def __init__(self, entity: EntityConfig, tags: Mapping[str, str]) -> None:
        self.entity = entity
        self.tags = dict(tags)
        self.templates: dict[str, tuple[_Part, ...]] = {}
        self.why_not: str | None = None
        for attribute, pattern in entity.patterns:
            parts, why = template(pattern.pattern)
            if parts is None:
                self.why_not = (
                    f"the key pattern of {attribute} of entity {entity.name!r} "
                    f"({pattern.pattern!r}) is not invertible: {why}"
                )
                break
            self.templates[attribute] = parts

    def source_key(self, values: Sequence[Any]) -> dict[str, Any] | None:
        if self.why_not is not None:
            return None
        # The table's key columns are the groups, in their order (cdc/sql/replica.py).
        by_group = dict(zip((g.name for g in self.entity.groups), values, strict=True))
        texts: dict[str, str] = {}
        for group in self.entity.groups:
            text = _group_text(by_group.get(group.name))
            if text is None:
                return None
            texts[group.name] = text
        keys: dict[str, Any] = {}
        for attribute, parts in self.templates.items():
            pieces = []
            for part in parts:
                if isinstance(part, _Group):
                    if part.name not in texts:
                        return None
                    pieces.append(texts[part.name])
                else:
                    pieces.append(part)
            keys[attribute] = {"N" if self.tags.get(attribute) == "N" else "S": "".join(pieces)}
        parsed = self.entity.parse(keys)
        if parsed is None or any(parsed.get(name) != text for name, text in texts.items()):
            return None
        return keys
