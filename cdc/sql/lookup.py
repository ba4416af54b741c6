"""What `cdc verify` reads from the replica: rows by key (JSON columns as text), the live
keys, the pending dead letters of a table, and how a replica row differs from the
values it should hold."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Text, cast, false, inspect, select, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.sqltypes import _Binary

from cdc.core.compare import Key, _canonical, _json, _norm_key, same
from cdc.core.jsontext import loads
from cdc.core.mapping import DELETED, ITEM
from cdc.sql.replica import ReplicaSpec
from cdc.sql.types import JsonDocument

LOOKUP_CHUNK = 500  # keys per replica query


class ReplicaLookup:
    """Reads of one replica table (`spec`) and of the dead letters in `schema`."""

    def __init__(self, engine: Engine, spec: ReplicaSpec, schema: str | None) -> None:
        self.engine = engine
        self.spec = spec
        self.schema = schema

    def key_too_long(self, key: Key) -> str | None:
        """Why the replica cannot hold this key (a MySQL/MariaDB key column holds 384
        characters), or None. Such an item is dead-lettered by the apply path."""
        for name, value in zip(self.spec.key_names, key, strict=True):
            column_type = self.spec.table.c[name].type
            length = getattr(column_type, "length", None)
            if length is None:
                continue
            binary = isinstance(column_type, _Binary)
            if isinstance(value, str):
                size = len(value.encode("utf-8", "surrogatepass")) if binary else len(value)
                unit = "bytes" if binary else "characters"
            elif isinstance(value, bytes | bytearray | memoryview):
                size, unit = len(bytes(value)), "bytes"
            else:
                continue
            if size > length:
                return (
                    f"key column {name!r} holds at most {length} {unit} in this database; "
                    f"this key has {size}"
                )
        return None

    def exists(self) -> bool:
        table = self.spec.table
        with self.engine.connect() as conn:
            return bool(inspect(conn).has_table(table.name, schema=table.schema))

    def _key_columns(self) -> list[ColumnElement[Any]]:
        return [self.spec.table.c[name] for name in self.spec.key_names]

    def rows(self, keys: Sequence[Key]) -> dict[Key, Mapping[str, Any]]:
        """The replica rows for `keys`, JSON columns as text (jsonb would come back
        parsed through float)."""
        table = self.spec.table
        key_columns = self._key_columns()
        value_columns = [
            cast(table.c[name], Text).label(name)
            if isinstance(table.c[name].type, JsonDocument)
            else table.c[name]
            for name in self.spec.value_names
        ]
        rows: dict[Key, Mapping[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = list(keys[start : start + LOOKUP_CHUNK])
                where = (
                    key_columns[0].in_([k[0] for k in chunk])
                    if len(key_columns) == 1
                    else tuple_(*key_columns).in_(chunk)
                )
                query = select(*key_columns, table.c[DELETED], *value_columns).where(where)
                for row in conn.execute(query).mappings():
                    key = _norm_key(tuple(row[name] for name in self.spec.key_names))
                    rows[key] = dict(row)
        return rows

    def live_keys(self) -> Iterator[Key]:
        table = self.spec.table
        query = select(*self._key_columns()).where(table.c[DELETED] == false())
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=2000).execute(query)
            for row in result:
                yield _norm_key(tuple(row))

    def pending_letters(self, source_table: str) -> dict[Any, str]:
        """This table's pending dead letters by key (plain JSON, compared as `same`
        does), each as "dead letter ID: CLASS: MESSAGE"."""
        from cdc.sql.bookkeeping import tables

        letters = tables(self.schema)["cdc_dead_letters"]
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(letters.name, schema=letters.schema):
                return {}
            query = (
                select(
                    letters.c.id,
                    letters.c["keys"].label("letter_keys"),
                    letters.c.error_class,
                    letters.c.error_message,
                )
                .where(letters.c.status == "pending", letters.c.source_table == source_table)
                .order_by(letters.c.id)
            )
            found: dict[Any, str] = {}
            for row in conn.execute(query):
                if row.letter_keys is None:
                    continue
                try:
                    key = loads(row.letter_keys)
                except ValueError:
                    continue
                message = f"dead letter {row.id}: {row.error_class}: {row.error_message}"
                found[_canonical(key)] = message  # the newest letter of a key wins
            return found

    def differing(self, expected: Mapping[str, Any], row: Mapping[str, Any]) -> list[str]:
        """The attributes (document mode) or columns (typed mode) that differ."""
        differing: list[str] = []
        for name in self.spec.value_names:
            want, got = expected.get(name), row[name]
            if isinstance(self.spec.table.c[name].type, JsonDocument):
                want, got = _json(want), _json(got)
                if isinstance(want, dict) and isinstance(got, dict):
                    prefix = "" if name == ITEM else f"{name}."
                    differing.extend(
                        f"{prefix}{attr}"
                        for attr in sorted(set(want) | set(got))
                        if attr not in want or attr not in got or not same(want[attr], got[attr])
                    )
                    continue
            if not same(want, got):
                differing.append(name)
        return differing
