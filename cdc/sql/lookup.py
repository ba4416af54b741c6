"""What `cdc verify` reads from the replica: rows by key (JSON columns as text), the live
keys, the child rows of parent keys (entity tables), the pending dead letters of a
table, and how a replica row (and its children) differs from what it should hold."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, Table, Text, and_, cast, false, inspect, literal, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.sqltypes import _Binary

from cdc.core.compare import Key, _canonical, _json, _norm_key, same
from cdc.core.jsontext import loads
from cdc.core.mapping import DELETED, ITEM, ChildSpec
from cdc.sql.replica import ReplicaSpec, keys_in
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
        return table_exists(self.engine, self.spec.table)

    def _key_columns(self) -> list[ColumnElement[Any]]:
        return [self.spec.table.c[name] for name in self.spec.key_names]

    def rows(self, keys: Sequence[Key]) -> dict[Key, Mapping[str, Any]]:
        """The replica rows for `keys`, JSON columns as text (jsonb would come back
        parsed through float)."""
        table = self.spec.table
        key_columns = self._key_columns()
        value_columns = [_readable(table, name) for name in self.spec.value_names]
        rows: dict[Key, Mapping[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = list(keys[start : start + LOOKUP_CHUNK])
                where = keys_in(key_columns, chunk)
                query = select(*key_columns, table.c[DELETED], *value_columns).where(where)
                for row in conn.execute(query).mappings():
                    key = _norm_key(tuple(row[name] for name in self.spec.key_names))
                    rows[key] = dict(row)
        return rows

    def child_rows(
        self, child: ChildSpec[Table], keys: Sequence[Key]
    ) -> dict[Key, list[dict[str, Any]]]:
        """The rows of child table `child` under each parent key of `keys`, in position
        order, without the parent's key columns; a key without rows is absent."""
        table = child.table
        parents = [table.c[name] for name in child.parent_keys]
        names = [c.name for c in table.columns if c.name not in child.parent_keys]
        found: dict[Key, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = list(keys[start : start + LOOKUP_CHUNK])
                query = (
                    select(*parents, *(_readable(table, name) for name in names))
                    .where(keys_in(parents, chunk))
                    .order_by(*parents, table.c[child.position])
                )
                for row in conn.execute(query).mappings():
                    key = _norm_key(tuple(row[name] for name in child.parent_keys))
                    found.setdefault(key, []).append({name: row[name] for name in names})
        return found

    def live_keys(self) -> Iterator[Key]:
        table = self.spec.table
        query = select(*self._key_columns()).where(table.c[DELETED] == false())
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=2000).execute(query)
            for row in result:
                yield _norm_key(tuple(row))

    def orphan_keys(self, child: ChildSpec[Table]) -> list[Key]:
        """The parent keys of child table `child` with no live parent row: rows the
        apply path would have deleted with their parent."""
        parent, table = self.spec.table, child.table
        match = and_(
            *(parent.c[name] == table.c[name] for name in child.parent_keys),
            parent.c[DELETED] == false(),
        )
        live_parent = select(literal(1)).select_from(parent).where(match).exists()
        query = (
            select(*(table.c[name] for name in child.parent_keys)).distinct().where(~live_parent)
        )
        with self.engine.connect() as conn:
            return [_norm_key(tuple(row)) for row in conn.execute(query)]

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


def differing_children(
    child: ChildSpec[Table], want: Sequence[Mapping[str, Any]], got: Sequence[Mapping[str, Any]]
) -> list[str]:
    """How a parent's child rows differ from the rows its item's list gives, matched by
    position: a row missing or extra as `TABLE[position]`, a differing column as
    `TABLE[position].COLUMN`."""
    name = child.table.name
    expected = {row[child.position]: row for row in want}
    stored = {row[child.position]: row for row in got}
    differing: list[str] = []
    for position in sorted(set(expected) | set(stored)):
        if position not in expected or position not in stored:
            differing.append(f"{name}[{position}]")
            continue
        a_row, b_row = expected[position], stored[position]
        for column in sorted(set(a_row) | set(b_row)):
            a, b = a_row.get(column), b_row.get(column)
            if isinstance(child.table.c[column].type, JsonDocument):
                a, b = _json(a), _json(b)
            if not same(a, b):
                differing.append(f"{name}[{position}].{column}")
    return differing


def table_exists(engine: Engine, table: Table) -> bool:
    with engine.connect() as conn:
        return bool(inspect(conn).has_table(table.name, schema=table.schema))


def _readable(table: Table, name: str) -> ColumnElement[Any]:
    """A column to read: JSON as text (jsonb would come back parsed through float)."""
    column = table.c[name]
    return cast(column, Text).label(name) if isinstance(column.type, JsonDocument) else column
