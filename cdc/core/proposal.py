"""A mapping file proposed from a sample of items (`cdc infer-mapping`), as TOML with
comments saying how much of the sample each choice covers. Pure.

Columns come from `cdc.core.infer`. A single-table design, whose items are told apart
by a type attribute or by the prefixes of string keys (`PK = "CUSTOMER#42"`), is
proposed as entities (README: "Single-table designs"): one table per group of items,
recognised by the type attribute's value or the key prefix, with key columns parsed out
of the key by a pattern per key attribute, columns from the group's own items, and a
list of maps as a child table; items no entity takes go to the document table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cdc.core.entities import POSITION
from cdc.core.infer import BIGINT_DIGITS, Observed, Proposal, av_parts, observe, propose, share
from cdc.core.mapping import BOOKKEEPING_COLUMNS, EXTRA, is_reserved_table
from cdc.core.naming import snake

# Attribute names that usually tell an item's entity in a single-table design.
_TYPE_NAMES = {"type", "entity", "entitytype", "kind", "recordtype", "itemtype", "typename"}
MAX_ENTITIES = 20
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")
_DIGITS = re.compile(r"\d+")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_INTEGER = re.compile(r"-?\d+")
KEY_TYPES = {"S": "text", "N": "numeric", "B": "bytea"}
# Column names cdc gives its own columns in an entity table and its child tables: no key
# column parsed from a key takes one.
_RESERVED = {n: f"<cdc column {n}>" for n in (*BOOKKEEPING_COLUMNS, EXTRA, POSITION)}


@dataclass(frozen=True)
class Sample:
    """What the proposal is made from."""

    source: str  # the DynamoDB table
    keys: Sequence[tuple[str, str]]  # (attribute, S | N | B), the table's key schema
    items: Sequence[Mapping[str, Any]]
    described: str  # "a Scan of 1000 items", for the header comment
    plain: bool = False  # items in the plain-JSON form (a replica's item/extra)
    declared: Mapping[str, str] | None = None  # existing columns (typed replica): attribute → type


def toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else toml_string(name)


def toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes, which TOML shares, but no surrogate pairs)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def render(sample: Sample) -> str:
    count, seen = observe(sample.items, plain=sample.plain)
    grouping = _grouping(sample, count)
    lines = [
        f"# cdc infer-mapping: proposed from {sample.described} of {sample.source}.",
        "# Review every choice, then `cdc migrate` and `cdc revision` (README, Migrations).",
    ]
    if grouping is not None and not any(tag == "B" for _, tag in sample.keys):
        lines.extend(_entity_mapping(sample, count, grouping))
        return "\n".join(lines) + "\n"
    source = toml_key(sample.source)
    lines += [
        "# Attributes without a column below stay in the `extra` JSON column.",
        "",
        f"[tables.{source}]",
        f"keys = [{', '.join(json.dumps(k) for k, _ in sample.keys)}]",
        'unmapped = "extra"',
        "",
        f"[tables.{source}.columns]",
    ]
    lines.extend(_key_columns(sample, count, seen))
    taken = {snake(name): name for name, _ in sample.keys}
    taken.update({n: f"<cdc column {n}>" for n in (*BOOKKEEPING_COLUMNS, EXTRA)})
    declared = sample.declared or {}
    key_names = {k for k, _ in sample.keys}
    for name, kind in declared.items():
        if name not in key_names:
            taken.setdefault(snake(name), name)
            lines.append(_line(name, kind, None, "declared in the mapping already"))
    skip = frozenset(key_names | set(declared))
    lines.extend(_columns(count, seen, plain=sample.plain, taken=taken, skip=skip))
    if grouping is not None:
        lines += [
            "",
            f"# Items are told apart by {grouping.how}, but a binary key cannot be parsed",
            "# into key columns, so no entities are proposed.",
        ]
    return "\n".join(lines) + "\n"


def _key_columns(sample: Sample, count: int, seen: Mapping[str, Observed]) -> list[str]:
    out: list[str] = []
    for name, tag in sample.keys:
        observed = seen.get(name)
        kind = KEY_TYPES[tag]
        why = "key"
        if tag == "N" and observed is not None and observed.integers:
            proposal = propose(observed)
            kind = proposal.type if proposal.type in ("bigint",) else kind
            why = f"key; {proposal.reason}"
        out.append(_line(name, kind, None, f"{why}; in {share(count, count)} items"))
    return out


def _columns(
    count: int,
    seen: Mapping[str, Observed],
    *,
    plain: bool,
    taken: dict[str, str],
    skip: frozenset[str] = frozenset(),
    what: str = "items",
) -> list[str]:
    """A line per attribute (sorted): its column, or a comment saying why none.
    `taken`: column names given out already (name → what took it); extended."""
    out: list[str] = []
    for name in sorted(seen):
        if name in skip:
            continue
        observed = seen[name]
        proposal = propose(observed, plain=plain)
        where = f"in {share(observed.values, count)} {what}"
        column = snake(name)
        if proposal.type is None:
            out.append(f"# {toml_key(name)}: no column, {proposal.reason}; {where}")
            continue
        if column in taken:
            out.append(
                f"# {toml_key(name)}: no column, its name {column!r} is taken by "
                f"{taken[column]}; {where}"
            )
            continue
        taken[column] = name
        out.append(_line(name, proposal.type, proposal, f"{proposal.reason}; {where}"))
    return out


def _line(name: str, kind: str, proposal: Proposal | None, comment: str) -> str:
    if proposal is not None and proposal.format is not None:
        value = f'{{ type = "{kind}", format = "{proposal.format}" }}'
    else:
        value = json.dumps(kind)
    return _commented(f"{toml_key(name)} = {value}", comment)


def _commented(text: str, comment: str) -> str:
    return f"{text:<44} # {comment}"


# --- entity groups ------------------------------------------------------------------------


@dataclass
class _Group:
    """Items of one entity: those of one type attribute value, or of one key prefix."""

    value: str  # the type attribute's value, or the key prefix ("ORDER#")
    items: list[Mapping[str, Any]]
    key: str | None = None  # the key attribute of the prefix (grouped by key prefix)
    shown: str = ""  # how the group's keys look, for the header comment
    named: int = 0  # how many key attributes have a prefix (grouped by key prefix)


@dataclass
class _Grouping:
    how: str  # "the attribute Type (...)", for the comments
    attribute: str | None  # the type attribute, or None: grouped by key prefix
    groups: list[_Group]


@dataclass
class _KeyShape:
    """Key patterns that every key of a group matches whole, with their named groups."""

    patterns: dict[str, str] = field(default_factory=dict)  # key attribute → pattern
    types: dict[str, tuple[str, str]] = field(default_factory=dict)  # group → (type, why)


def _entity_mapping(sample: Sample, count: int, grouping: _Grouping) -> list[str]:
    source = toml_key(sample.source)
    document = snake(sample.source)
    shapes = [_key_patterns(sample.keys, g.items, sample.plain) for g in grouping.groups]
    names = _entity_names(grouping.groups, shapes)
    tables = _Names({document.lower()})
    routed = _Routed(sample, grouping, shapes)
    out = [
        f"# Items are told apart by {grouping.how}:",
        "# a table per entity (README, Single-table designs), its key columns parsed out of",
        "# the key; attributes without a column stay in the entity table's `extra` JSON",
        f"# column. Items no entity takes are documents in the table {document}.",
        "",
        f"[tables.{source}]",
        _commented(
            'unmatched = "document"',
            f"items no entity takes: {share(routed.count(None), count)} in the sample",
        ),
    ]
    for index, (group, shape, (name, wanted)) in enumerate(
        zip(grouping.groups, shapes, names, strict=True)
    ):
        entity = f"tables.{source}.entities.{toml_key(name)}"
        if grouping.attribute is not None:
            rule = (
                f"{{ attribute = {toml_string(grouping.attribute)}, "
                f"value = {toml_string(group.value)} }}"
            )
            said = f"{grouping.attribute} = {toml_string(group.value)}"
        else:
            assert group.key is not None
            rule = f"{{ key = {toml_string(group.key)}, prefix = {toml_string(group.value)} }}"
            said = f"{group.key} starts with {toml_string(group.value)}"
        out += [
            "",
            _commented(f"[{entity}]", f"{share(len(group.items), count)} items: {said}"),
        ]
        own = sum(1 for i in group.items if routed[id(i)] == index)
        if own < len(group.items):
            out.append(
                f"# Of these, {share(own, len(group.items))} come here; the others match an "
                "entity above, which takes them first."
            )
        out += [f"table = {toml_string(tables.claim(wanted))}", f"match = {rule}"]
        for key, pattern in shape.patterns.items():
            compiled = re.compile(pattern)
            fits = sum(
                1
                for item in group.items
                if (text := _key_text(item.get(key), sample.plain)) is not None
                and compiled.fullmatch(text)
            )
            out.append(
                _commented(
                    f"key.{toml_key(key)} = {toml_string(pattern)}",
                    f"{share(fits, len(group.items))} of its keys match whole",
                )
            )
        types = ", ".join(f"{g} = {toml_string(t)}" for g, (t, _) in shape.types.items())
        whys = "; ".join(f"{g}: {why}" for g, (_, why) in shape.types.items())
        out.append(_commented(f"key_columns = {{ {types} }}", whys))
        taken = {n: f"<cdc column {n}>" for n in (*BOOKKEEPING_COLUMNS, EXTRA)}
        taken.update({g: f"the key column {g}" for g in shape.types})
        group_count, seen = observe(group.items, plain=sample.plain)
        children = []
        for attribute in sorted(seen):
            child = _child(attribute, group.items, group_count, sample.plain, set(shape.types))
            if child is not None:
                children.append((attribute, child))
        skip = {k for k, _ in sample.keys} | {a for a, _ in children}
        if grouping.attribute is not None:
            skip.add(grouping.attribute)
        out += ["", f"[{entity}.columns]"]
        out.extend(
            _columns(group_count, seen, plain=sample.plain, taken=taken, skip=frozenset(skip))
        )
        for attribute, (comment, lines) in children:
            header = f"{entity}.children.{toml_key(attribute)}"
            out += [
                "",
                f"# {toml_key(attribute)}: {comment}. A child table: a row per",
                "# element, keyed by the entity's key columns and the element's `position`.",
                f"[{header}]",
                f"table = {toml_string(tables.claim(f'{name}_{snake(attribute)}'))}",
                "",
                f"[{header}.columns]",
                *lines,
            ]
    return out


class _Routed:
    """Where the proposed rules send each item of the sample: the index of the first
    entity whose key patterns its key matches whole and whose rule holds, as routing
    does (cdc/core/entities.py), or None (the document table)."""

    def __init__(self, sample: Sample, grouping: _Grouping, shapes: Sequence[_KeyShape]) -> None:
        self.by_item: dict[int, int | None] = {}
        compiled = [{k: re.compile(p) for k, p in shape.patterns.items()} for shape in shapes]
        for item in sample.items:
            self.by_item[id(item)] = next(
                (
                    i
                    for i, group in enumerate(grouping.groups)
                    if _takes(sample, grouping, group, compiled[i], item)
                ),
                None,
            )

    def __getitem__(self, item_id: int) -> int | None:
        return self.by_item[item_id]

    def count(self, where: int | None) -> int:
        return sum(1 for found in self.by_item.values() if found == where)


def _takes(
    sample: Sample,
    grouping: _Grouping,
    group: _Group,
    patterns: Mapping[str, re.Pattern[str]],
    item: Mapping[str, Any],
) -> bool:
    for key, pattern in patterns.items():
        text = _key_text(item.get(key), sample.plain)
        if text is None or pattern.fullmatch(text) is None:
            return False
    if grouping.attribute is not None:
        return _text(item.get(grouping.attribute), sample.plain) == group.value
    text = None if group.key is None else _key_text(item.get(group.key), sample.plain)
    return text is not None and text.startswith(group.value)


def _child(
    attribute: str,
    items: Sequence[Mapping[str, Any]],
    count: int,
    plain: bool,
    key_columns: set[str],
) -> tuple[str, list[str]] | None:
    """A list attribute whose every element is a map, as a child table: (a comment
    saying how much of the sample has it, its column lines), or None."""
    holders = 0
    elements: list[Mapping[str, Any]] = []
    for item in items:
        if attribute not in item:
            continue
        value = item[attribute]
        if plain:
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
                return None
            elements.extend(value)
        else:
            tag, payload = av_parts(value)
            if tag == "NULL":
                continue
            if tag != "L" or not isinstance(payload, list):
                return None
            for element in payload:
                element_tag, fields = av_parts(element)
                if element_tag != "M" or not isinstance(fields, Mapping):
                    return None
                elements.append(fields)
        holders += 1
    if not elements:
        return None
    element_count, seen = observe(elements, plain=plain)
    taken = {n: f"<cdc column {n}>" for n in (POSITION,)}
    taken.update({g: f"the key column {g}" for g in key_columns})
    lines = _columns(element_count, seen, plain=plain, taken=taken, what="elements")
    if not any(not line.startswith("#") for line in lines):
        return None  # no element attribute makes a column: the list stays a jsonb column
    comment = f"a list of maps in {share(holders, count)} items, {len(elements)} elements"
    return comment, lines


class _Names:
    """Table names given out, each distinct (case-insensitively) and none cdc's own."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = taken

    def claim(self, wanted: str) -> str:
        name = wanted if not is_reserved_table(wanted) else f"t_{wanted}"
        n = 1
        while name.lower() in self.taken:
            n += 1
            name = f"{wanted}_{n}"
        self.taken.add(name.lower())
        return name


def _identifier(text: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", snake(text)).strip("_") or "entity"
    return name if name[:1].isalpha() else f"e_{name}"


def _entity_names(groups: Sequence[_Group], shapes: Sequence[_KeyShape]) -> list[tuple[str, str]]:
    """An entity name per group, from its type value or key prefix, and the table name
    it would like. A value that reads as a state ("archived") of items shaped like
    another group's ("order") names both: "archived_order", table "archived_orders"."""
    bases = [_identifier(g.value) for g in groups]
    names: list[tuple[str, str]] = []
    for base, shape in zip(bases, shapes, strict=True):
        name = base
        if base.endswith("ed"):
            like = [
                b
                for b, s in zip(bases, shapes, strict=True)
                if b != base and not b.endswith("ed") and s.patterns == shape.patterns
            ]
            if like:
                name = f"{base}_{like[0]}"
        unique, n = name, 1
        while unique in (u for u, _ in names):
            n += 1
            unique = f"{name}_{n}"
        names.append((unique, _plural(name)))
    return names


def _plural(word: str) -> str:
    """A table name for an entity: `order` → `orders`, `category` → `categories`; a
    word ending in s (`settings`, `status`) or ed (`archived`) stays as it is."""
    if word.endswith(("s", "ed")):
        return word
    if word.endswith(("x", "z", "ch", "sh")):
        return f"{word}es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return f"{word[:-1]}ies"
    return f"{word}s"


def _grouping(sample: Sample, count: int) -> _Grouping | None:
    return _by_type_attribute(sample, count) or _by_key_prefix(sample, count)


def _by_type_attribute(sample: Sample, count: int) -> _Grouping | None:
    for name in sorted({n for item in sample.items for n in item}):
        if name.lower().lstrip("_").replace("_", "") not in _TYPE_NAMES:
            continue
        members: dict[str, list[Mapping[str, Any]]] = {}
        for item in sample.items:
            value = item.get(name)
            text = value.get("S") if isinstance(value, Mapping) and not sample.plain else value
            if isinstance(text, str):
                members.setdefault(text, []).append(item)
        covered = sum(len(v) for v in members.values())
        if 2 <= len(members) <= MAX_ENTITIES and covered * 10 >= count * 9:
            groups = sorted(
                (_Group(v, i) for v, i in members.items()), key=lambda g: (-len(g.items), g.value)
            )
            values = ", ".join(f"{g.value!r} {share(len(g.items), count)}" for g in groups)
            return _Grouping(f"the attribute {name} ({values})", name, groups)
    return None


def _by_key_prefix(sample: Sample, count: int) -> _Grouping | None:
    strings = [k for k, tag in sample.keys if tag == "S"]
    if not strings:
        return None
    members: dict[tuple[str, str], _Group] = {}
    for item in sample.items:
        parts = tuple(_prefix(_text(item.get(k), sample.plain)) for k in strings)
        named = [(k, p) for k, p in zip(strings, parts, strict=True) if p != "*"]
        if not named:
            continue
        group = members.setdefault(named[-1], _Group(named[-1][1], [], key=named[-1][0]))
        group.items.append(item)
        group.shown = "/".join(parts)
        group.named = max(group.named, len(named))
    covered = sum(len(g.items) for g in members.values())
    if not 2 <= len(members) <= MAX_ENTITIES or covered * 10 < count * 9:
        return None
    # The first entity whose rule holds takes an item: the more prefixes a group's keys
    # have (CUSTOMER#/PROFILE before CUSTOMER#/*), the sooner its rule comes.
    groups = sorted(members.values(), key=lambda g: (-g.named, -len(g.items), g.key or "", g.value))
    shown = ", ".join(f"{g.shown} {share(len(g.items), count)}" for g in groups)
    return _Grouping(f"the prefixes of {'/'.join(strings)} ({shown})", None, groups)


def _text(av: Any, plain: bool) -> str | None:
    value = av if plain else (av.get("S") if isinstance(av, Mapping) else None)
    return value if isinstance(value, str) else None


def _key_text(av: Any, plain: bool) -> str | None:
    """A key attribute's text as the key patterns see it: a string, or a number as
    written."""
    if plain:
        if isinstance(av, bool) or av is None:
            return None
        return av if isinstance(av, str) else str(av)
    tag, payload = av_parts(av)
    return payload if tag in ("S", "N") and isinstance(payload, str) else None


def _prefix(text: str | None) -> str:
    if text is None:
        return "*"
    if "#" in text:
        return text.split("#", 1)[0] + "#"
    return text if _CONSTANT.fullmatch(text) else "*"


def _key_patterns(
    keys: Sequence[tuple[str, str]], items: Sequence[Mapping[str, Any]], plain: bool
) -> _KeyShape:
    """A regular expression per key attribute that every key of a group matches whole:
    the `#`-separated parts that are the same in every item as they are, the others as
    named groups (digits, days, text), which become the entity table's key columns."""
    shape = _KeyShape()
    used = set(_RESERVED)

    def label(wanted: str) -> str:
        name = re.sub(r"[^a-z0-9_]", "_", wanted.lower()).strip("_") or "key"
        if not name[:1].isalpha():
            name = f"p_{name}"
        while name in used:
            name += "_"
        used.add(name)
        return name

    for key, tag in keys:
        texts = [_key_text(item.get(key), plain) for item in items]
        if tag == "N":
            name = label(snake(key))
            if all(t is not None and _INTEGER.fullmatch(t) for t in texts) and all(
                len(t.lstrip("-")) <= BIGINT_DIGITS for t in texts if t is not None
            ):
                shape.patterns[key] = f"(?P<{name}>-?\\d+)"
                shape.types[name] = ("bigint", "integers")
            else:
                shape.patterns[key] = f"(?P<{name}>.+)"
                shape.types[name] = ("numeric", "numbers")
            continue
        split = [t.split("#") for t in texts if t is not None]
        if len(split) != len(texts) or not split or len({len(s) for s in split}) != 1:
            name = label(snake(key))
            shape.patterns[key] = f"(?P<{name}>.+)"
            shape.types[name] = ("text", "keys of more than one shape: the whole key")
            continue
        parts: list[str] = []
        base = snake(key)
        for column in zip(*split, strict=True):
            if _constant(column):
                parts.append(re.escape(column[0]))
                base = re.sub(r"[^a-z0-9_]", "_", column[0].lower()).strip("_") or base
                continue
            if all(_DIGITS.fullmatch(v) for v in column):
                name, expression = label(f"{base}_id"), r"\d+"
                if any(len(v) > 1 and v.startswith("0") for v in column):
                    shape.types[name] = ("text", "digits, some with leading zeros")
                elif any(len(v) > BIGINT_DIGITS for v in column):
                    shape.types[name] = ("text", f"digits, some more than {BIGINT_DIGITS}")
                else:
                    shape.types[name] = ("bigint", "digits")
            elif all(_DAY.fullmatch(v) for v in column):
                name, expression = label(f"{base}_day"), r"\d{4}-\d{2}-\d{2}"
                days = all(_is_day(v) for v in column)
                shape.types[name] = ("date", "ISO-8601 days") if days else ("text", "day-like")
            else:
                name = label(base)
                expression = "[^#]*" if "" in column else "[^#]+"
                shape.types[name] = ("text", "text")
            parts.append(f"(?P<{name}>{expression})")
        shape.patterns[key] = "#".join(parts)
    if not shape.types:
        # Every part constant (one item, say): the first key whole is the key column.
        key = next(iter(shape.patterns))
        name = label(snake(key))
        shape.patterns[key] = f"(?P<{name}>{shape.patterns[key]})"
        shape.types[name] = ("text", "the same in every item: the whole key")
    return shape


def _constant(values: Sequence[str]) -> bool:
    """Whether a key part is the same text in every item (a part seen once is, when it
    reads as a constant: `PROFILE`, not `42` or `alice`)."""
    if len(set(values)) != 1:
        return False
    return len(values) > 1 or _CONSTANT.fullmatch(values[0]) is not None


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
