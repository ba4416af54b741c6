"""A mapping file proposed from a sample of items (`cdc infer-mapping`), as TOML with
comments saying how much of the sample each choice covers. Pure.

Columns come from `cdc.core.infer`. Entity groups (a type attribute, or the prefixes
of string keys: `PK = "CUSTOMER#42"`) are written as commented-out suggestions, since
routing items to entity tables is not built yet.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdc.core.infer import Observed, Proposal, observe, propose, share
from cdc.core.mapping import BOOKKEEPING_COLUMNS, EXTRA
from cdc.core.naming import snake

# Attribute names that usually tell an item's entity in a single-table design.
_TYPE_NAMES = {"type", "entity", "entitytype", "kind", "recordtype", "itemtype", "typename"}
MAX_ENTITIES = 20
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")
_DIGITS = re.compile(r"\d+")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
KEY_TYPES = {"S": "text", "N": "numeric", "B": "bytea"}


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
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def render(sample: Sample) -> str:
    count, seen = observe(sample.items, plain=sample.plain)
    lines = [
        f"# cdc infer-mapping: proposed from {sample.described} of {sample.source}.",
        "# Review every choice, then `cdc migrate` and `cdc revision` (README, Migrations).",
        "# Attributes without a column below stay in the `extra` JSON column.",
        "",
        f"[tables.{toml_key(sample.source)}]",
        f"keys = [{', '.join(json.dumps(k) for k, _ in sample.keys)}]",
        'unmapped = "extra"',
        "",
        f"[tables.{toml_key(sample.source)}.columns]",
    ]
    lines.extend(_columns(sample, count, seen))
    lines.extend(_entities(sample, count))
    return "\n".join(lines) + "\n"


def _columns(
    sample: Sample,
    count: int,
    seen: Mapping[str, Observed],
    *,
    prefix: str = "",
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    key_names = [k for k, _ in sample.keys]
    taken = {snake(name): name for name in key_names}
    taken.update({n: f"<cdc column {n}>" for n in (*BOOKKEEPING_COLUMNS, EXTRA)})
    out: list[str] = []
    for name, tag in sample.keys:
        if prefix:
            break
        observed = seen.get(name)
        kind = KEY_TYPES[tag]
        why = "key"
        if tag == "N" and observed is not None and observed.integers:
            proposal = propose(observed)
            kind = proposal.type if proposal.type in ("bigint",) else kind
            why = f"key; {proposal.reason}"
        out.append(_line(prefix, name, kind, None, f"{why}; in {share(count, count)} items"))
    declared = sample.declared or {}
    for name, kind in declared.items():
        if name not in key_names:
            taken.setdefault(snake(name), name)
            out.append(_line(prefix, name, kind, None, "declared in the mapping already"))
    for name in sorted(seen):
        observed = seen[name]
        if name in key_names or name in declared or name in skip:
            continue
        proposal = propose(observed, plain=sample.plain)
        where = f"in {share(observed.values, count)} items"
        column = snake(name)
        if proposal.type is None:
            out.append(f"{prefix}# {toml_key(name)}: no column, {proposal.reason}; {where}")
            continue
        if column in taken:
            out.append(
                f"{prefix}# {toml_key(name)}: no column, its name {column!r} is taken by "
                f"{taken[column]}; {where}"
            )
            continue
        taken[column] = name
        out.append(_line(prefix, name, proposal.type, proposal, f"{proposal.reason}; {where}"))
    return out


def _line(prefix: str, name: str, kind: str, proposal: Proposal | None, comment: str) -> str:
    if proposal is not None and proposal.format is not None:
        value = f'{{ type = "{kind}", format = "{proposal.format}" }}'
    else:
        value = json.dumps(kind)
    text = f"{prefix}{toml_key(name)} = {value}"
    return f"{text:<44} # {comment}"


# --- entity groups ------------------------------------------------------------------------


def _entities(sample: Sample, count: int) -> list[str]:
    groups = _by_type_attribute(sample, count) or _by_key_prefix(sample, count)
    if groups is None:
        return []
    how, attribute, members = groups
    source = toml_key(sample.source)
    out = [
        "",
        "# --- entity groups: suggestions only (routing items to entity tables is not",
        "# built yet; until it is, every item goes to the table above) ---",
        f"# Items are told apart by {how}.",
    ]
    for name, items in members.items():
        entity = re.sub(r"[^a-z0-9_]+", "_", snake(name)).strip("_") or "entity"
        sub = Sample(sample.source, sample.keys, items, sample.described, sample.plain)
        sub_count, seen = observe(items, plain=sample.plain)
        out.append("#")
        out.append(f"# [tables.{source}.entities.{entity}]  # {share(len(items), count)} items")
        out.append(f'# table = "{entity}"')
        if attribute is not None:
            out.append(
                f"# match = {{ attribute = {json.dumps(attribute)}, value = {json.dumps(name)} }}"
            )
        patterns = _key_patterns(sample.keys, items)
        for key, pattern in patterns.items():
            out.append(f"# key.{toml_key(key)} = {json.dumps(pattern)}")
        out.append(f"# [tables.{source}.entities.{entity}.columns]")
        skip = frozenset({attribute} if attribute else ())
        out.extend(_columns(sub, sub_count, seen, prefix="# ", skip=skip))
    return out


def _by_type_attribute(
    sample: Sample, count: int
) -> tuple[str, str | None, dict[str, list[Mapping[str, Any]]]] | None:
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
            values = ", ".join(f"{v!r} {share(len(i), count)}" for v, i in members.items())
            return f"the attribute {name} ({values})", name, members
    return None


def _by_key_prefix(
    sample: Sample, count: int
) -> tuple[str, str | None, dict[str, list[Mapping[str, Any]]]] | None:
    strings = [k for k, tag in sample.keys if tag == "S"]
    if not strings:
        return None
    members: dict[str, list[Mapping[str, Any]]] = {}
    signatures: dict[str, tuple[str, ...]] = {}
    for item in sample.items:
        parts = tuple(_prefix(_text(item.get(k), sample.plain)) for k in strings)
        named = [p for p in parts if p != "*"]
        if not named:
            continue
        name = named[-1].lower()
        members.setdefault(name, []).append(item)
        signatures[name] = parts
    covered = sum(len(v) for v in members.values())
    if not 2 <= len(members) <= MAX_ENTITIES or covered * 10 < count * 9:
        return None
    shown = ", ".join(
        f"{'/'.join(signatures[n])} {share(len(i), count)}" for n, i in members.items()
    )
    return f"the prefixes of {'/'.join(strings)} ({shown})", None, members


def _text(av: Any, plain: bool) -> str | None:
    value = av if plain else (av.get("S") if isinstance(av, Mapping) else None)
    return value if isinstance(value, str) else None


def _prefix(text: str | None) -> str:
    if text is None:
        return "*"
    if "#" in text:
        return text.split("#", 1)[0] + "#"
    return text if _CONSTANT.fullmatch(text) else "*"


def _key_patterns(
    keys: Sequence[tuple[str, str]], items: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """A regular expression per string key that every item of a group matches, with
    named groups for the parts that vary (digits, days, text)."""
    out: dict[str, str] = {}
    for key, tag in keys:
        if tag != "S":
            continue
        texts = [_text(item.get(key), False) or _text(item.get(key), True) for item in items]
        split = [t.split("#") for t in texts if t is not None]
        if not split or len({len(s) for s in split}) != 1:
            continue
        parts: list[str] = []
        base, used = snake(key), set[str]()
        for column in zip(*split, strict=True):
            if len(Counter(column)) == 1:
                parts.append(re.escape(column[0]))
                base = re.sub(r"[^a-z0-9_]", "_", column[0].lower()).strip("_") or base
                continue
            if all(_DIGITS.fullmatch(v) for v in column):
                label, expression = f"{base}_id", r"\d+"
            elif all(_DAY.fullmatch(v) for v in column):
                label, expression = f"{base}_day", r"\d{4}-\d{2}-\d{2}"
            else:
                label, expression = base, "[^#]+"
            if not label[:1].isalpha():
                label = f"p_{label}"
            while label in used:
                label += "_"
            used.add(label)
            parts.append(f"(?P<{label}>{expression})")
        out[key] = "^" + "#".join(parts) + "$"
    return out
