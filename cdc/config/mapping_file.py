"""The mapping file (CDC_CONFIG, README: "The mapping file"): TOML read strictly, every
unknown key or wrong shape an error naming the file and the key."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, get_args

from cdc.config.names import CONFIG
from cdc.core.convert import TIME_FORMATS, parse_type
from cdc.core.entities import POSITION, ChildConfig, EntityConfig, KeyGroup, MatchRule
from cdc.core.errors import ConfigError
from cdc.core.mapping import (
    ColumnConfig,
    Deletes,
    Drift,
    NulPolicy,
    TableConfig,
    TableOptions,
    TtlDeletes,
    Unmapped,
    is_reserved_table,
)
from cdc.core.naming import snake
from cdc.core.pii import HASHES, AttributeRule, HashKey, Personal

_TOP_LEVEL_KEYS = {"database_url", "schema", "migrations", "defaults", "tables"}


_OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "deletes": get_args(Deletes),
    "ttl_deletes": get_args(TtlDeletes),
    "nul": get_args(NulPolicy),
    "drift": get_args(Drift),
}


# `personal` comes from a table's `attributes` (and columns' `hash`), not an option.
_OPTION_KEYS = {f.name for f in fields(TableOptions)} - {"personal"}


_TABLE_KEYS = _OPTION_KEYS | {
    "table",
    "schema",
    "keys",
    "columns",
    "unmapped",
    "attributes",
    "entities",
    "unmatched",
}


_ENTITY_KEYS = {"table", "schema", "match", "key", "key_columns", "columns", "unmapped", "children"}


_MATCH_KEYS = {"attribute", "value", "values", "key", "prefix", "regex"}


_CHILD_KEYS = {"table", "schema", "columns"}


_COLUMN_KEYS = {"type", "column", "required", "format", "hash"}


_ATTRIBUTE_KEYS = {"exclude", "hash"}


# Types a primary key column can have on every supported database.
_KEY_KINDS = {"text", "numeric", "bigint", "integer", "smallint", "bytea", "date", "timestamptz"}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{CONFIG} names {path}, which does not exist") from None
    except OSError as exc:  # a directory, no permission
        raise ConfigError(f"{CONFIG} names {path}, which cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG} file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise ConfigError(
            f"{CONFIG} file {path} is not valid TOML: not UTF-8 at byte {exc.start}"
        ) from None
    unknown = set(values) - _TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_TOP_LEVEL_KEYS))}"
        )
    return values


def _only_known(raw: dict[str, Any], known: set[str], here: str, noun: str) -> None:
    """One line naming the keys of `raw` that are not `known`, and those that are."""
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(
            f"{here} has unknown {noun} {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def _names(table: Any, schema: Any, here: str) -> None:
    """`table` and `schema`, where given, are non-empty strings."""
    for key, value in (("table", table), ("schema", schema)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{here} {key} must be a non-empty string, got {value!r}")


def _expect(value: Any, kind: type, path: Path | None, key: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{path}: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _table(
    source: str,
    raw: Any,
    defaults: TableOptions,
    path: Path | None,
    hash_key: HashKey | None = None,
) -> TableConfig:
    where = f"tables.{source}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{where}] must be a table of settings")
    _only_known(raw, _TABLE_KEYS, f"{path}: [{where}]", "setting(s)")
    options = _options({k: v for k, v in raw.items() if k in _OPTION_KEYS}, defaults, path, where)
    if raw.get("entities") and ("keys" in raw or "columns" in raw):
        raise ConfigError(
            f"{path}: [{where}] has entities and also keys/columns; with entities, each "
            f"entity declares its columns ([{where}.entities.NAME.columns]) and the items "
            "no entity takes go to a document table"
        )
    if raw.get("entities") and raw.get("drift", "off") != "off":
        raise ConfigError(
            f"{path}: [{where}] drift = {raw['drift']!r} is not available with entities "
            "yet; new attributes wait in each entity table's `extra`"
        )
    table = raw.get("table")
    schema = raw.get("schema")
    _names(table, schema, f"{path}: [{where}]")
    unmapped = raw.get("unmapped", "extra")
    if unmapped not in ("extra", "drop"):
        raise ConfigError(f"{path}: [{where}] unmapped = {unmapped!r}; expected 'extra' or 'drop'")
    keys = raw.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"{path}: [{where}] keys must be a list of attribute names, got {keys!r}")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{path}: [{where}] keys lists an attribute twice: {keys!r}")
    raw_columns = raw.get("columns", {})
    if not isinstance(raw_columns, dict):
        raise ConfigError(f"{path}: [{where}.columns] must be a table of attribute = type")
    columns = tuple(_column(attr, spec, path, where) for attr, spec in raw_columns.items())
    if columns and not keys:
        raise ConfigError(
            f"{path}: [{where}] has columns but no keys; list the key attributes in `keys`"
        )
    if keys and not columns:
        raise ConfigError(
            f"{path}: [{where}] has keys but no columns; declare each key attribute's "
            f"type in [{where}.columns]"
        )
    by_attribute = {c.attribute: c for c in columns}
    for key in keys:
        column = by_attribute.get(key)
        if column is None:
            raise ConfigError(f"{path}: [{where}] key {key!r} is not declared in [{where}.columns]")
        if column.type.kind not in _KEY_KINDS:
            raise ConfigError(
                f"{path}: [{where}.columns] {key} is a key and cannot be {column.type}; "
                f"key columns can be {', '.join(sorted(_KEY_KINDS))}"
            )
        if "." in key:
            raise ConfigError(f"{path}: [{where}] key {key!r} must be a top-level attribute")
    rules = _rules(raw.get("attributes", {}), raw_columns, by_attribute, keys, path, where)
    if rules:
        options = replace(options, personal=Personal(rules, hash_key or HashKey("", None)))
    drifts = options.drift != "off" and (not columns or unmapped != "extra")
    if drifts and "drift" not in raw:  # from [defaults]: for the tables it applies to
        options = replace(options, drift="off")
    elif drifts:
        raise ConfigError(
            f"{path}: [{where}] drift = {options.drift!r} needs a typed table (keys and "
            'columns) with unmapped = "extra", where new attributes wait for their column'
        )
    unmapped_value: Unmapped = unmapped
    entities = _entities(raw.get("entities", {}), path, where)
    unmatched = raw.get("unmatched", "document")
    if unmatched not in ("document", "dead_letter"):
        raise ConfigError(
            f"{path}: [{where}] unmatched = {unmatched!r}; expected 'document' or 'dead_letter'"
        )
    _distinct_tables(entities, table or snake(source), path, where)
    return TableConfig(
        source=source,
        options=options,
        table=table,
        schema=schema,
        keys=tuple(keys),
        columns=tuple(
            ColumnConfig(
                c.attribute, c.column, c.type, c.required or c.attribute in keys, c.time_format
            )
            for c in columns
        ),
        unmapped=unmapped_value,
        entities=entities,
        unmatched=unmatched,
    )


def _distinct_tables(
    entities: tuple[EntityConfig, ...], document: str, path: Path | None, where: str
) -> None:
    seen: dict[str, str] = {}
    if entities:  # named even with unmatched = "dead_letter": records are told by it
        seen[document.lower()] = "the document table of unmatched items"
    for entity in entities:
        for name, what in (
            (entity.table, f"entity {entity.name!r}"),
            *((c.table, f"child table of {entity.name}.{c.attribute}") for c in entity.children),
        ):
            if is_reserved_table(name):
                raise ConfigError(
                    f"{path}: [{where}] {what} would take the name {name!r}, which cdc "
                    "reserves (cdc_*, alembic_version)"
                )
            other = seen.setdefault(name.lower(), what)
            if other != what:
                raise ConfigError(
                    f"{path}: [{where}] {what} and {other} both write table {name!r}; set "
                    "`table` for one of them"
                )


def _entities(raw: Any, path: Path | None, where: str) -> tuple[EntityConfig, ...]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{where}.entities] must be a table of entities")
    return tuple(
        _entity(name, spec, path, f"{where}.entities.{name}") for name, spec in raw.items()
    )


def _entity(name: str, raw: Any, path: Path | None, where: str) -> EntityConfig:
    here = f"{path}: [{where}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{here} must be a table of settings")
    _only_known(raw, _ENTITY_KEYS, here, "setting(s)")
    table = raw.get("table", snake(name))
    schema = raw.get("schema")
    _names(table, schema, here)
    match = _match(raw.get("match"), here)
    patterns, groups = _key_patterns(raw.get("key"), raw.get("key_columns", {}), here, where)
    raw_columns = raw.get("columns", {})
    if not isinstance(raw_columns, dict):
        raise ConfigError(f"{here}: columns must be a table of attribute = type")
    columns = tuple(_column(a, spec, path, where) for a, spec in raw_columns.items())
    taken = {g.name for g in groups}
    for column in columns:
        if column.column in taken:
            raise ConfigError(
                f"{here}: column {column.column!r} of attribute {column.attribute} is also "
                "a key column parsed from the key; rename one (`column = ...`)"
            )
    unmapped = raw.get("unmapped", "extra")
    if unmapped not in ("extra", "drop"):
        raise ConfigError(f"{here} unmapped = {unmapped!r}; expected 'extra' or 'drop'")
    raw_children = raw.get("children", {})
    if not isinstance(raw_children, dict):
        raise ConfigError(f"{here}: children must be a table of list attribute = {{ table = ... }}")
    children = tuple(
        _child(attribute, spec, path, f"{where}.children.{attribute}", taken)
        for attribute, spec in raw_children.items()
    )
    for child in children:
        if child.attribute in raw_columns:
            raise ConfigError(
                f"{here}: {child.attribute} is both a column and a child table; choose one"
            )
    return EntityConfig(
        name=name,
        table=table,
        match=match,
        patterns=patterns,
        groups=groups,
        columns=columns,
        unmapped=unmapped,
        schema=schema,
        children=children,
    )


def _match(raw: Any, here: str) -> MatchRule:
    if raw is None:
        return MatchRule()
    if not isinstance(raw, dict):
        raise ConfigError(
            f'{here} match must be an inline table: {{ attribute = "Type", value = "order" }}, '
            '{ key = "SK", prefix = "ORDER#" } or { key = "SK", regex = "^ORDER#" }'
        )
    _only_known(raw, _MATCH_KEYS, f"{here} match", "key(s)")
    if "attribute" in raw:
        if "key" in raw or "prefix" in raw or "regex" in raw:
            raise ConfigError(f"{here} match names an attribute and a key; choose one")
        values = raw.get("values", [raw["value"]] if "value" in raw else None)
        if values is None or ("value" in raw and "values" in raw):
            raise ConfigError(f"{here} match on attribute needs value = ... or values = [...]")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{here} match values must be a non-empty list")
        texts = tuple(str(v) if isinstance(v, int | str) else "" for v in values)
        if "" in texts or any(isinstance(v, bool) for v in values):
            raise ConfigError(f"{here} match values must be strings or integers")
        attribute = raw["attribute"]
        if not isinstance(attribute, str) or not attribute:
            raise ConfigError(f"{here} match attribute must be an attribute name")
        return MatchRule(attribute=attribute, values=texts)
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        raise ConfigError(f'{here} match needs attribute = "..." or key = "..."')
    if ("prefix" in raw) == ("regex" in raw):
        raise ConfigError(f"{here} match on key {key!r} needs one of prefix or regex")
    if "prefix" in raw:
        if not isinstance(raw["prefix"], str) or not raw["prefix"]:
            raise ConfigError(f"{here} match prefix must be a non-empty string")
        return MatchRule(key=key, prefix=raw["prefix"])
    return MatchRule(key=key, regex=_regex(raw["regex"], f"{here} match regex"))


def _regex(raw: Any, here: str) -> re.Pattern[str]:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{here} must be a non-empty regular expression")
    try:
        return re.compile(raw)
    except re.error as exc:
        raise ConfigError(f"{here} {raw!r} is not a regular expression: {exc}") from None


def _key_patterns(
    raw: Any, raw_types: Any, here: str, where: str
) -> tuple[tuple[tuple[str, re.Pattern[str]], ...], tuple[KeyGroup, ...]]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f'{here} needs key.ATTRIBUTE = "regex" for each key attribute of the source '
            "table, with named groups for the key columns: "
            'key.PK = "CUSTOMER#(?P<customer_id>\\d+)"'
        )
    if not isinstance(raw_types, dict):
        raise ConfigError(f'{here} key_columns must be a table of group = "type"')
    patterns = []
    groups: list[KeyGroup] = []
    for attribute, text in raw.items():
        pattern = _regex(text, f"{here} key.{attribute}")
        patterns.append((attribute, pattern))
        for group in sorted(pattern.groupindex, key=pattern.groupindex.__getitem__):
            if any(g.name == group for g in groups):
                raise ConfigError(f"{here}: key group {group!r} is named twice")
            type_text = raw_types.get(group, "text")
            try:
                ctype = parse_type(str(type_text))
            except ValueError as exc:
                raise ConfigError(f"{here} key_columns.{group}: {exc}") from None
            if ctype.kind not in _KEY_KINDS or ctype.kind == "bytea":
                raise ConfigError(
                    f"{here} key_columns.{group} cannot be {ctype}; key columns parsed "
                    f"from a key can be {', '.join(sorted(_KEY_KINDS - {'bytea'}))}"
                )
            groups.append(KeyGroup(attribute, group, ctype))
    unknown = set(raw_types) - {g.name for g in groups}
    if unknown:
        raise ConfigError(
            f"{here} key_columns names {', '.join(sorted(unknown))}, which no key pattern "
            "captures as a named group (?P<name>...)"
        )
    if not groups:
        raise ConfigError(
            f"{here}: the key patterns capture no named group, so the table would have no "
            "key; capture the key columns with (?P<name>...)"
        )
    return tuple(patterns), tuple(groups)


def _child(
    attribute: str, raw: Any, path: Path | None, where: str, parent_columns: set[str]
) -> ChildConfig:
    here = f"{path}: [{where}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{here} must be a table of settings (table, columns)")
    _only_known(raw, _CHILD_KEYS, here, "setting(s)")
    if "." in attribute or not attribute:
        raise ConfigError(f"{here}: a child table's list must be a top-level attribute")
    table = raw.get("table", snake(attribute))
    schema = raw.get("schema")
    _names(table, schema, here)
    raw_columns = raw.get("columns", {})
    if not isinstance(raw_columns, dict) or not raw_columns:
        raise ConfigError(f"{here} needs columns: the element attributes to keep, with types")
    columns = tuple(_column(a, spec, path, where) for a, spec in raw_columns.items())
    for column in columns:
        if column.column in parent_columns or column.column == POSITION:
            raise ConfigError(
                f"{here}: column {column.column!r} would collide with the parent's key "
                f"columns or {POSITION!r}; rename it (`column = ...`)"
            )
    return ChildConfig(attribute, table, columns, schema)


def _rules(
    raw: Any,
    raw_columns: dict[str, Any],
    columns: dict[str, ColumnConfig],
    keys: list[str],
    path: Path | None,
    where: str,
) -> tuple[AttributeRule, ...]:
    """The table's personal-data rules: `[tables.X.attributes]` entries and columns
    declared with `hash` (cdc/core/pii.py)."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: [{where}.attributes] must be a table of attribute = {{ exclude = true }} "
            'or { hash = "hmac-sha256" }'
        )
    rules: dict[str, AttributeRule] = {}
    for attribute, spec in raw.items():
        here = f"{path}: [{where}.attributes] {attribute}"
        if not isinstance(spec, dict):
            raise ConfigError(f'{here} must be {{ exclude = true }} or {{ hash = "hmac-sha256" }}')
        _only_known(spec, _ATTRIBUTE_KEYS, here, "key(s)")
        if any(not part for part in attribute.split(".")):
            raise ConfigError(f"{here}: not an attribute path (Name or Parent.Child)")
        exclude = spec.get("exclude", False)
        if not isinstance(exclude, bool):
            raise ConfigError(f"{here}: exclude must be true or false")
        hashed = _hash_choice(spec, here)
        if exclude and hashed:
            raise ConfigError(f"{here}: exclude and hash cannot both be set")
        if exclude and attribute.split(".")[0] in keys:
            raise ConfigError(
                f"{here} is a key attribute and cannot be excluded: the key names the row "
                "in cdc's bookkeeping (dead letters, tombstones, redrive)"
            )
        if exclude and attribute in columns:
            raise ConfigError(
                f"{here} is excluded (never stored) but also a column in [{where}.columns]"
            )
        if exclude or hashed:
            rules[attribute] = AttributeRule(attribute, "exclude" if exclude else "hash")
    for attribute, spec in raw_columns.items():
        if isinstance(spec, dict) and _hash_choice(spec, f"{path}: [{where}.columns] {attribute}"):
            if attribute in rules and rules[attribute].action != "hash":
                raise ConfigError(f"{path}: [{where}] {attribute} is both excluded and hashed")
            rules[attribute] = AttributeRule(attribute, "hash")
    for attribute, rule in rules.items():
        if attribute.split(".")[0] in keys:
            verb = "excluded" if rule.action == "exclude" else "hashed"
            raise ConfigError(
                f"{path}: [{where}] {attribute} is a key attribute and cannot be {verb}: "
                "the key names the row in cdc's bookkeeping (dead letters, tombstones, "
                "redrive)"
            )
        inside = [c for c in columns if c.startswith(f"{attribute}.")]
        if inside:
            verb = "excluded" if rule.action == "exclude" else "hashed"
            raise ConfigError(
                f"{path}: [{where}] {attribute} is {verb}, which leaves nothing for the "
                f"column of {inside[0]}"
            )
        column = columns.get(attribute)
        if rule.action == "hash" and column is not None and column.type.kind != "text":
            raise ConfigError(
                f"{path}: [{where}.columns] {attribute} is hashed, which stores hex text: "
                f"its type must be text, not {column.type}"
            )
    # Children before their parent: "A.B" excluded, then "A" hashed without it.
    return tuple(sorted(rules.values(), key=lambda r: (-len(r.path), r.attribute)))


def _hash_choice(spec: dict[str, Any], here: str) -> bool:
    if "hash" not in spec:
        return False
    if spec["hash"] not in HASHES:
        raise ConfigError(
            f"{here}: hash = {spec['hash']!r}; expected one of {', '.join(map(repr, HASHES))}"
        )
    return True


def _column(attribute: str, spec: Any, path: Path | None, where: str) -> ColumnConfig:
    here = f"{path}: [{where}.columns] {attribute}"
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ConfigError(
            f'{here} must be a type ("numeric(12,2)") or an inline table {{ type = ... }}'
        )
    _only_known(spec, _COLUMN_KEYS, here, "key(s)")
    if "type" not in spec:
        raise ConfigError(f"{here} has no type")
    try:
        ctype = parse_type(str(spec["type"]))
    except ValueError as exc:
        raise ConfigError(f"{here}: {exc}") from None
    column = spec.get("column", snake(attribute))
    if not isinstance(column, str) or not column:
        raise ConfigError(f"{here}: column must be a non-empty string")
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise ConfigError(f"{here}: required must be true or false")
    time_format = spec.get("format", "auto")
    if time_format not in TIME_FORMATS:
        raise ConfigError(
            f"{here}: format = {time_format!r}; expected one of {', '.join(TIME_FORMATS)}"
        )
    if time_format != "auto" and ctype.kind != "timestamptz":
        raise ConfigError(f"{here}: format only applies to timestamptz columns")
    if any(not part for part in attribute.split(".")):
        raise ConfigError(f"{here}: not an attribute path (Name or Parent.Child)")
    return ColumnConfig(attribute, column, ctype, required, time_format)


def _options(raw: Any, base: TableOptions, path: Path | None, where: str) -> TableOptions:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{where}] must be a table of options")
    _only_known(raw, _OPTION_KEYS, f"{path}: [{where}]", "option(s)")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        choices = _OPTION_CHOICES.get(key)
        if choices is not None and value not in choices:
            raise ConfigError(
                f"{path}: [{where}] {key} = {value!r}; "
                f"expected one of {', '.join(map(repr, choices))}"
            )
        if choices is None and not isinstance(value, bool):
            raise ConfigError(f"{path}: [{where}] {key} must be true or false, got {value!r}")
        values[key] = value
    current = {f.name: getattr(base, f.name) for f in fields(TableOptions)}
    current.update(values)
    return TableOptions(**current)
