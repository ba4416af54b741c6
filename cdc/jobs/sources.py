"""Two checks between planning a batch and writing it, for the two Lambda sources
(README: Kinesis Data Streams; docs/architecture.md, "Kinesis Data Streams"):

* one source per replica table. DynamoDB Streams versions (sequence numbers, and
  generation-encoded versions) and Kinesis versions (creation times in µs) do not
  compare, so the guard would keep the wrong change if both fed one table: the first
  source seen for a table is recorded in `cdc_replica_sources`, and records of the
  other are dead-lettered, naming the table, both sources and the way out;
* Kinesis ties: two different changes of one key with the same creation time (common
  at millisecond precision) cannot be ordered by their versions, and the guard would
  keep whichever came first. A tie found in the batch, or between a record and the
  stored row of its key, is resolved by a consistent read of the item, stored at
  version + 1 µs (above both, below any later change at millisecond precision), when
  the table enables hydration; otherwise the tied records are dead-lettered. An
  identical copy of a change (Kinesis delivers some twice) is not a tie.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cdc.core.change import Change
from cdc.core.compare import _norm_key
from cdc.core.dead_letters import DeadLetter
from cdc.core.deadline import Deadline
from cdc.core.mapping import RowVersion
from cdc.core.outcomes import Prepared
from cdc.core.plan import plan
from cdc.sources.kinesis.records import is_stream_arn, stream_name
from cdc.sources.snapshots import SNAPSHOT_LABELS
from cdc.sql.errors import ErrorKind, classify, describe
from cdc.sql.lookup import ReplicaLookup
from cdc.sql.sources import KINESIS, STREAMS, buried_at, registered_source, stored_at

if TYPE_CHECKING:
    from cdc.sql.replica import ReplicaSpec
    from cdc.sql.replicator import Replicator

log = logging.getLogger("cdc")

NAMES = {STREAMS: "DynamoDB Streams", KINESIS: "Kinesis Data Streams"}
WAY_OUT = (
    "cdc takes one source per table because their versions do not compare. To switch, "
    "see README 'Kinesis Data Streams', 'Switching sources': stop the old source, delete "
    "the table's row from cdc_replica_sources, drop the replica table, run `cdc backfill`, "
    "then `cdc dlq redrive`"
)


_SOURCES: dict[str, str | None] = {}  # stream ARN → source (a batch carries one or a few)


def source_of(change: Change) -> str | None:
    """The change's source; None for a table snapshot (a backfill), which is neither."""
    return None if change.sequence == 0 else _source_of_arn(change.stream_arn)


def _source_of_arn(arn: str) -> str | None:
    """The source of a stream ARN; None for a snapshot's synthetic one. Cached."""
    if arn in _SOURCES:
        return _SOURCES[arn]
    source: str | None
    if arn.rpartition("/stream/")[2] in SNAPSHOT_LABELS:
        source = None
    else:
        source = KINESIS if is_stream_arn(arn) else STREAMS
    if len(_SOURCES) < 1024:
        _SOURCES[arn] = source
    return source


def _versions(prepared: Prepared) -> list[tuple[ReplicaSpec, RowVersion]]:
    """Every planned version (still linked as planned: see `_replanned`)."""
    return [
        (table_plan.spec, row)
        for table_plan in prepared.plans
        for row in (*table_plan.rows, *table_plan.superseded)
    ]


def _replanned(
    prepared: Prepared,
    versions: list[tuple[ReplicaSpec, RowVersion]],
    dead: list[DeadLetter],
    unreadable: list[int],
) -> Prepared:
    """The batch planned again from `versions` (their links to older versions are
    made anew), with more dead letters and records to report."""
    for _, row in versions:
        row.older = None
    return Prepared(
        plan(versions),
        [*prepared.dead, *dead],
        prepared.ignored,
        prepared.changes,
        prepared.records,
        [*prepared.unreadable, *unreadable],
    )


class SourceGuard:
    """Remembers, per process, the source recorded for each replica table."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[str, str | None]] = {}

    def check(self, rep: Replicator, prepared: Prepared) -> Prepared:
        # The common case, without a look at each row: every (table, stream) of the
        # batch is of the source already recorded for its table.
        pairs = {(c.source_table, c.stream_arn) for c in prepared.changes}
        if all(self._agrees(table, arn) for table, arn in pairs):
            return prepared
        refused: list[DeadLetter] = []
        kept: list[tuple[ReplicaSpec, RowVersion]] = []
        now = datetime.now(UTC)
        fresh: set[str] = set()  # asked the database in this batch
        for spec, row in _versions(prepared):
            source = source_of(row.change)
            if source is not None:
                recorded = self.known.get(spec.source_table)
                if recorded is None or (
                    recorded[0] != source and spec.source_table not in fresh
                ):  # a refusal is checked again: the row may have been deleted since
                    fresh.add(spec.source_table)
                    recorded = self._registered(rep, spec, source, row.change.stream_arn, now)
                    self.known[spec.source_table] = recorded
                if recorded[0] != source:
                    refused.append(
                        prepared.dead_letter(row, spec, "source_mix", _mix(spec, row, *recorded))
                    )
                    continue
            kept.append((spec, row))
        if not refused:
            return prepared  # the common case: planned as it was
        log.error("%d records refused: %s", len(refused), refused[0].message)
        return _replanned(prepared, kept, refused, [])

    def _agrees(self, table: str, arn: str) -> bool:
        source = _source_of_arn(arn)
        known = self.known.get(table)
        return source is None or (known is not None and known[0] == source)

    @staticmethod
    def _registered(
        rep: Replicator, spec: ReplicaSpec, source: str, stream_arn: str, now: datetime
    ) -> tuple[str, str | None]:
        try:
            return registered_source(
                rep.engine, rep.backend, rep.schema, spec, source, stream_arn, now
            )
        except Exception as exc:
            if classify(exc) is ErrorKind.TRANSIENT:
                raise  # an outage: the batch is reported and delivered again
            # e.g. a role without privileges on the table (an upgrade that did not
            # extend the grants): replication goes on, checked within this process only.
            log.error(
                "cannot read or record the source of table %r in cdc_replica_sources (%s); "
                "the one-source-per-table check holds for this process only: grant "
                "SELECT, INSERT, UPDATE on cdc_replica_sources to the service's role",
                spec.source_table,
                describe(exc)[1],
            )
            return source, stream_arn


def _mix(spec: ReplicaSpec, row: RowVersion, recorded: str, stream: str | None) -> str:
    other = KINESIS if recorded == STREAMS else STREAMS
    where = f" ({stream})" if stream else ""
    return (
        f"table {spec.source_table!r} (replica {spec.qualified_name}) is replicated from "
        f"{NAMES[recorded]}{where}; this record comes from {NAMES[other]} "
        f"({row.change.stream_arn}). {WAY_OUT}"
    )


def _same(a: Change, b: Change) -> bool:
    """Two records of one key and version carry the same change (a duplicate)."""
    if a.is_remove or b.is_remove:
        return a.is_remove and b.is_remove
    return a.new_image == b.new_image


def resolve_ties(rep: Replicator, prepared: Prepared, deadline: Deadline | None) -> Prepared:
    if all(_source_of_arn(arn) != KINESIS for arn in {c.stream_arn for c in prepared.changes}):
        return prepared  # DynamoDB Streams versions never tie: no look at each row
    versions = _versions(prepared)
    groups: dict[tuple[str, Any], list[tuple[ReplicaSpec, RowVersion]]] = {}
    for spec, row in versions:
        if source_of(row.change) == KINESIS:
            groups.setdefault((spec.qualified_name, _norm_key(row.key)), []).append((spec, row))
    if not groups:
        return prepared
    tied: dict[tuple[str, Any], str] = {}  # group → why
    top: dict[tuple[str, Any], tuple[ReplicaSpec, RowVersion]] = {}
    for name, group in groups.items():
        spec, newest = max(group, key=lambda sr: sr[1].sequence)
        top[name] = (spec, newest)
        same_time = [r for _, r in group if r.sequence == newest.sequence]
        if any(not _same(newest.change, r.change) for r in same_time):
            tied[name] = "in this batch"
    _stored_ties(rep, top, tied)
    if not tied:
        return prepared

    dead: list[DeadLetter] = []
    unreadable: list[int] = []
    wanted: list[tuple[Change, ReplicaSpec]] = []
    dropped: set[int] = set()  # id() of versions taken out of the plan
    for name, why in tied.items():
        spec, newest = top[name]
        same_time = [r for _, r in groups[name] if r.sequence == newest.sequence]
        if spec.options.hydrate:
            wanted.append((_resolution(newest.change), spec))
            continue
        for row in same_time:
            dropped.add(id(row))
            dead.append(prepared.dead_letter(row, spec, "tie", _tie_message(spec, row, why)))
    if wanted:
        found = rep.hydration.items(wanted, deadline)
        for change, spec in wanted:
            item = found.get(change.index)
            name = (spec.qualified_name, _norm_key(spec.key_of(change)))
            if isinstance(item, Exception):  # report them all: never pick by delivery order
                for _, row in groups[name]:
                    dropped.add(id(row))
                    unreadable.append(row.change.index)
                continue
            if item is None:  # gone now: the tie ends in a delete
                resolved = replace(change, event_name="REMOVE")
            else:
                resolved = replace(change, new_image=item)
            version = spec.row_version(resolved, lazy=True)
            if version is not None:
                versions.append((spec, version))
    kept = [(s, r) for s, r in versions if id(r) not in dropped]
    return _replanned(prepared, kept, dead, sorted(set(unreadable)))


def _stored_ties(
    rep: Replicator,
    top: dict[tuple[str, Any], tuple[ReplicaSpec, RowVersion]],
    tied: dict[tuple[str, Any], str],
) -> None:
    """Ties between a batch's newest version of a key and the row already stored at the
    same version (delivered in an earlier batch)."""
    by_table: dict[str, list[tuple[ReplicaSpec, RowVersion]]] = {}
    for name, (spec, row) in top.items():
        if name not in tied:
            by_table.setdefault(spec.qualified_name, []).append((spec, row))
    for rows in by_table.values():
        spec = rows[0][0]
        if rep.replica_tables.ensure(spec) is not None:
            continue  # the write reports or dead-letters the table's records
        wanted = [(r.key, r.sequence) for _, r in rows]
        stored = stored_at(rep.engine, spec, wanted)
        buried: set[Any] = set()
        if spec.options.deletes == "hard":
            buried = buried_at(rep.engine, rep.schema, spec, wanted)
        lookup = ReplicaLookup(rep.engine, spec, rep.schema)
        for _, row in rows:
            key = _norm_key(row.key)
            found = stored.get(key)
            if found is None:
                if key in buried and not row.deleted:  # deleted at this very version
                    tied[(spec.qualified_name, key)] = "with a hard delete stored earlier"
                continue
            if bool(found["_cdc_deleted"]) or row.deleted:
                differs = bool(found["_cdc_deleted"]) != row.deleted
            elif not spec.materialize(row) or row.values is None:
                continue  # unbuildable: dead-lettered as such when written
            else:
                differs = bool(lookup.differing(row.values, found))
            if differs:
                tied[(spec.qualified_name, _norm_key(row.key))] = (
                    "with the change stored by an earlier batch"
                )


def _resolution(change: Change) -> Change:
    """The change that stands for a tie: the item as a consistent read finds it, one
    microsecond above the tied version."""
    return replace(
        change,
        sequence=change.sequence + 1,
        event_name="MODIFY",
        new_image=None,
        old_image=None,
        is_ttl_expiry=False,
    )


def _tie_message(spec: ReplicaSpec, row: RowVersion, why: str) -> str:
    return (
        f"tie: two different changes of this key in table {spec.source_table!r} carry the "
        f"same ApproximateCreationDateTime ({row.sequence} µs, stream "
        f"{stream_name(row.change.stream_arn)}), found {why}; which is newer cannot be "
        "told, and cdc never picks by delivery order. Set hydrate = true for the table "
        "(a consistent read settles ties), and use ApproximateCreationDateTimePrecision "
        "= MICROSECOND on the Kinesis destination; then `cdc dlq redrive`"
    )
