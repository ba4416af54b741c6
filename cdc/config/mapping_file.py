"""The mapping file (CDC_CONFIG, README: "The mapping file"): TOML read strictly, every
unknown key or wrong shape an error naming the file and the key."""

from __future__ import annotations

import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, get_args

from cdc.config.names import CONFIG
from cdc.core.convert import TIME_FORMATS, parse_type
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


_TABLE_KEYS = _OPTION_KEYS | {"table", "schema", "keys", "columns", "unmapped", "attributes"}


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
    unknown = set(raw) - _TABLE_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: [{where}] has unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_TABLE_KEYS))}"
        )
    options = _options({k: v for k, v in raw.items() if k in _OPTION_KEYS}, defaults, path, where)
    table = raw.get("table")
    schema = raw.get("schema")
    for key, value in (("table", table), ("schema", schema)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{path}: [{where}] {key} must be a non-empty string, got {value!r}")
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
    )


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
        unknown = set(spec) - _ATTRIBUTE_KEYS
        if unknown:
            raise ConfigError(
                f"{here} has unknown key(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_ATTRIBUTE_KEYS))}"
            )
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
    unknown = set(spec) - _COLUMN_KEYS
    if unknown:
        raise ConfigError(
            f"{here} has unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_COLUMN_KEYS))}"
        )
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
    unknown = set(raw) - _OPTION_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: [{where}] has unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_OPTION_KEYS))}"
        )
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
