"""Which source feeds each replica table (`cdc_replica_sources`), and the stored versions
of keys, which the Kinesis tie check compares with incoming records (README: Kinesis
Data Streams; docs/architecture.md, "Kinesis Data Streams")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Text, cast, func, inspect, select

from cdc.core.compare import Key, _norm_key
from cdc.core.mapping import DELETED, SEQ
from cdc.sql.backends.base import Backend
from cdc.sql.bookkeeping import tables
from cdc.sql.replica import ReplicaSpec, keys_in
from cdc.sql.types import JsonDocument

STREAMS = "dynamodb_streams"
KINESIS = "kinesis"
# Kinesis versions are creation times in µs: 10^15-10^17 until the year 5138.
# DynamoDB Streams sequence numbers are 21 digits and more (and generation-encoded
# versions far larger): a replica holding a version above this was fed by Streams.
KINESIS_VERSIONS_BELOW = 10**17
KINESIS_VERSIONS_FROM = 10**14
CHUNK = 500


def registered_source(
    engine: Engine,
    dialect: Backend,
    schema: str | None,
    spec: ReplicaSpec,
    source: str,
    stream_arn: str,
    now: datetime,
) -> tuple[str, str | None]:
    """(source, stream) recorded for `spec`'s table, recording `source` if none is.

    A table replicated before this bookkeeping existed is recorded as the source its
    stored versions show (see KINESIS_VERSIONS_BELOW), not as the one asking."""
    t = tables(schema)["cdc_replica_sources"]
    query = select(t.c.source, t.c.stream_arn).where(t.c.source_table == spec.source_table)
    with engine.begin() as conn:
        row = conn.execute(query).first()
        if row is not None:
            return str(row.source), row.stream_arn
        found = _source_from_versions(conn, spec)
        recorded = found or source
        values = {
            "source_table": spec.source_table,
            "source": recorded,
            "stream_arn": stream_arn if recorded == source else None,
            "registered_at": now,
        }
        # Two writers registering at once: the first wins, the second reads it back.
        stmt = dialect.merge(t, [values], assign=lambda new: {"source": t.c.source})
        conn.execute(stmt)
        row = conn.execute(query).first()
    assert row is not None
    return str(row.source), row.stream_arn


def _source_from_versions(conn: Any, spec: ReplicaSpec) -> str | None:
    table = spec.table
    if not inspect(conn).has_table(table.name, schema=table.schema):
        return None
    highest = conn.execute(select(func.max(table.c[SEQ]))).scalar()
    if highest is None or int(highest) < KINESIS_VERSIONS_FROM:
        return None  # empty, snapshots only, or sample-sized sequence numbers
    return STREAMS if int(highest) >= KINESIS_VERSIONS_BELOW else KINESIS


def stored_at(
    engine: Engine, spec: ReplicaSpec, wanted: Sequence[tuple[Key, int]]
) -> dict[Key, Mapping[str, Any]]:
    """The stored rows of the keys in `wanted` whose version is exactly the one given
    (JSON columns as text): the candidates for a tie. One query per 500 keys."""
    table = spec.table
    if not wanted:
        return {}
    key_columns = [table.c[name] for name in spec.key_names]
    value_columns = [
        cast(table.c[name], Text).label(name)
        if isinstance(table.c[name].type, JsonDocument)
        else table.c[name]
        for name in spec.value_names
    ]
    found: dict[Key, Mapping[str, Any]] = {}
    versions = {_norm_key(k): v for k, v in wanted}
    with engine.connect() as conn:
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            keys = [k for k, _ in chunk]
            query = select(*key_columns, table.c[SEQ], table.c[DELETED], *value_columns).where(
                keys_in(key_columns, keys), table.c[SEQ].in_(sorted({v for _, v in chunk}))
            )
            for row in conn.execute(query).mappings():
                key = _norm_key(tuple(row[name] for name in spec.key_names))
                if versions.get(key) == int(row[SEQ]):
                    found[key] = dict(row)
    return found


def buried_at(
    engine: Engine, schema: str | None, spec: ReplicaSpec, wanted: Sequence[tuple[Key, int]]
) -> set[Key]:
    """The keys in `wanted` whose hard delete left a tombstone at exactly the version
    given: with no row left to compare, a different change at that version ties."""
    from cdc.core.mapping import key_hash

    if not wanted:
        return set()
    t = tables(schema)["cdc_tombstones"]
    by_hash = {key_hash(k)[0]: (_norm_key(k), v) for k, v in wanted}
    found: set[Key] = set()
    hashes = sorted(by_hash)
    with engine.connect() as conn:
        for start in range(0, len(hashes), CHUNK):
            query = select(t.c.key_hash, t.c.sequence).where(
                t.c.table_name == spec.qualified_name,
                t.c.key_hash.in_(hashes[start : start + CHUNK]),
            )
            for key_hash_, sequence in conn.execute(query):
                key, version = by_hash[key_hash_]
                if int(sequence) == version:
                    found.add(key)
    return found
