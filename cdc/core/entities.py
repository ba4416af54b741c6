"""Entity routing (README: "Single-table designs"): one DynamoDB table, several replica
tables. Pure (no connection).

A source table may declare entities, each a replica table of its own with a rule that
recognises its items and key columns parsed out of the DynamoDB key. The guard stays per
**source** key (docs/architecture.md §3b): every change of a key reaches every table the
key could be in (its *candidates*, a function of the key alone), as the row version in
the table of the entity the item is and as a "moved" version in every other one. Each
candidate table therefore sees the newest version of the key, whichever entity that
version made the item: a late older record cannot bring an item back into a table it
has left, and an item whose entity changes moves (upserted in one table, deleted from
the other) in the batch's one transaction.

A rule on key attributes alone decides for ever (an item's key never changes); only a
rule on other attributes lets an item move, so only such rules make more than one
candidate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from cdc.core.change import Change
from cdc.core.convert import ColumnType, Converter, converter
from cdc.core.errors import RecordError
from cdc.core.mapping import RowVersion, TableOptions, TableSpec, missing_new_image

Unmatched = Literal["document", "dead_letter"]
POSITION = "position"


@dataclass(frozen=True)
class MatchRule:
    """What recognises an entity's items: an attribute's value (`attribute` + `values`),
    a key attribute's prefix (`key` + `prefix`) or a regular expression searched in a
    key attribute (`key` + `regex`). No rule: the key patterns alone decide."""

    attribute: str | None = None
    values: tuple[str, ...] = ()
    key: str | None = None
    prefix: str | None = None
    regex: re.Pattern[str] | None = None

    @property
    def by_key(self) -> bool:
        return self.attribute is None

    def holds(self, keys: Mapping[str, Any], image: Mapping[str, Any] | None) -> bool:
        if self.attribute is not None:
            return image is not None and _text(image.get(self.attribute)) in self.values
        if self.key is None:
            return True
        text = _text(keys.get(self.key))
        if text is None:
            return False
        if self.prefix is not None:
            return text.startswith(self.prefix)
        return self.regex is not None and self.regex.search(text) is not None

    def describe(self) -> str:
        if self.attribute is not None:
            return f"{self.attribute} in {list(self.values)}"
        if self.prefix is not None:
            return f"{self.key} starts with {self.prefix!r}"
        if self.regex is not None:
            return f"{self.key} matches {self.regex.pattern!r}"
        return "its key patterns"


def _text(av: Any) -> str | None:
    """An S or N attribute's text (numbers as written); None for anything else."""
    if type(av) is dict and len(av) == 1:
        ((tag, payload),) = av.items()
        if tag in ("S", "N") and isinstance(payload, str):
            return payload
    return None


@dataclass(frozen=True)
class KeyGroup:
    """A key column parsed out of a key attribute: a named group of its pattern."""

    attribute: str  # the DynamoDB key attribute the group is in
    name: str  # the group's name: the column's
    type: ColumnType


@dataclass(frozen=True)
class ChildConfig:
    """A list attribute of an entity kept as a child table: one row per element, keyed by
    the parent's key columns and the element's position."""

    attribute: str
    table: str
    columns: tuple[Any, ...] = ()  # ColumnConfig of the elements' attributes
    schema: str | None = None


@dataclass(frozen=True)
class EntityConfig:
    """`[tables.SOURCE.entities.NAME]` of the mapping file."""

    name: str
    table: str
    match: MatchRule
    patterns: tuple[tuple[str, re.Pattern[str]], ...]  # (key attribute, fullmatch pattern)
    groups: tuple[KeyGroup, ...]
    columns: tuple[Any, ...] = ()  # ColumnConfig, as a typed table's
    unmapped: Literal["extra", "drop"] = "extra"
    schema: str | None = None
    children: tuple[ChildConfig, ...] = ()

    def parse(self, keys: Mapping[str, Any]) -> dict[str, str] | None:
        """The key groups' texts, or None when the key is not of this entity's shape."""
        if len(keys) != len(self.patterns):
            return None
        found: dict[str, str] = {}
        for attribute, pattern in self.patterns:
            text = _text(keys.get(attribute))
            match = None if text is None else pattern.fullmatch(text)
            if match is None:
                return None
            found.update({k: v for k, v in match.groupdict().items() if v is not None})
        return found

    def could_hold(self, keys: Mapping[str, Any]) -> bool:
        """Whether an item of this key could be this entity (some image permitting)."""
        return self.parse(keys) is not None and (
            not self.match.by_key or self.match.holds(keys, None)
        )


def key_parser(entity: EntityConfig, where: str) -> Callable[[Change], tuple[Any, ...]]:
    """`TableSpec.parse_key` of an entity table: its key columns' values from the key."""
    numeric = {"numeric", "bigint", "integer", "smallint"}
    converts: list[tuple[KeyGroup, Converter]] = [
        (g, converter(g.name, g.type)) for g in entity.groups
    ]

    def parse_key(change: Change) -> tuple[Any, ...]:
        found = entity.parse(change.keys)
        if found is None:
            raise RecordError(
                f"key {_show_key(change.keys)} does not match the key patterns of entity "
                f"{entity.name!r} ({where})",
                kind="key_mismatch",
            )
        values = []
        for group, convert in converts:
            text = found.get(group.name)
            if text is None:
                raise RecordError(
                    f"key group {group.name!r} of entity {entity.name!r} matched nothing in "
                    f"{group.attribute} = {_show_key(change.keys)}",
                    kind="key_mismatch",
                )
            if "\x00" in text:
                raise RecordError(
                    f"key group {group.name!r} contains U+0000, which the database cannot "
                    "store in a key",
                    kind="nul",
                )
            av = {"N": text} if group.type.kind in numeric else {"S": text}
            values.append(convert(av, f"Keys.{group.attribute}<{group.name}>"))
        return tuple(values)

    return parse_key


def _show_key(keys: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_text(v)!r}" for k, v in sorted(keys.items())) + "}"


SpecT = TypeVar("SpecT", bound=TableSpec[Any])


@dataclass
class Routing(Generic[SpecT]):
    """How one source table's changes reach its entity tables. `specs` holds each
    entity's table spec, in declaration order (the first entity that matches wins);
    `unmatched` gives the document table of items no entity takes (unmatched =
    "document"), built on first need."""

    source: str
    entities: Sequence[EntityConfig]
    specs: Sequence[SpecT]
    unmatched: Unmatched
    document: Callable[[Change], SpecT]
    options: TableOptions
    where: str = ""
    _by_name: dict[str, SpecT] = field(init=False)

    def __post_init__(self) -> None:
        self._by_name = {e.name: s for e, s in zip(self.entities, self.specs, strict=True)}

    def candidates(self, keys: Mapping[str, Any]) -> tuple[list[EntityConfig], bool]:
        """The entities an item of this key could be, in order, and whether it could
        be unmatched: after an entity whose rule is on the key alone and holds, no
        other can match."""
        found = []
        for entity in self.entities:
            if entity.could_hold(keys):
                found.append(entity)
                if entity.match.by_key:
                    return found, False
        return found, True

    def versions(self, change: Change) -> list[tuple[SpecT, RowVersion]]:
        """The row versions one change asks of the entity tables (lazy: values are built
        later). Empty when the change is ignored (an expiry the tables keep)."""
        if change.is_remove and change.is_ttl_expiry and self.options.ttl_deletes == "ignore":
            return []  # an expiry this source's tables keep: in every table
        if not change.is_remove and change.new_image is None:
            raise missing_new_image(change)
        entities, may_be_unmatched = self.candidates(change.keys)
        image = change.old_image if change.is_remove else change.new_image
        known = image is not None
        chosen: EntityConfig | None = None
        if known:
            chosen = next((e for e in entities if e.match.holds(change.keys, image)), None)
        out: list[tuple[SpecT, RowVersion]] = []
        document = self.unmatched == "document" and may_be_unmatched
        if known and chosen is None and not document and not change.is_remove:
            raise RecordError(
                f"item {_show_key(change.keys)} of table {self.source!r} matches no entity "
                f"({', '.join(f'{e.name}: {e.match.describe()}' for e in self.entities)}) and "
                f'{self.where} says unmatched = "dead_letter"; add an entity for it or set '
                'unmatched = "document"',
                kind="unmatched",
            )
        targets: list[tuple[SpecT, bool]] = [(self._by_name[e.name], e is chosen) for e in entities]
        if document:
            targets.append((self.document(change), known and chosen is None))
        for spec, destination in targets:
            version: RowVersion | None
            if destination:
                version = spec.row_version(change, lazy=True)
                assert version is not None  # None only for an expiry kept, returned above
            else:
                version = RowVersion(
                    spec.key_of(change),
                    change.sequence,
                    True,
                    None,
                    change.event_time,
                    change,
                    moved=True,
                )
            out.append((spec, version))
        return out
