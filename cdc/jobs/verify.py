"""Verify: prove the replica matches the source table, or say exactly where it does not.

Each source item is turned into the change a backfill would apply (a snapshot change,
cdc/sources/snapshots.py) and through the table's own `TableSpec` into the values the
replica row should hold, so whatever the mapping (document or typed) the comparison is
the apply path's, not a second opinion. Values are compared in the plain-JSON form
(README, "Replica tables"): numbers exactly, as Decimals.

Three kinds of difference:

* missing: in the source, but no row in the replica or a soft-deleted one;
* extra: a live row in the replica, not in the source;
* different: both, but some attribute differs;

and two more, told apart from missing and extra because their cause is known:

* unreplicable: the item cannot be applied (the mapping rejects it, or its key is
  longer than the replica's key column holds: MySQL/MariaDB keys hold 384
  characters), or it is missing and a pending dead letter of its key says why. Still
  a difference (the replica lacks it);
* kept, which is no difference: a live row of a table with `ttl_deletes = "ignore"`
  whose source item is gone and whose TTL attribute (DescribeTimeToLive) is in the
  past: DynamoDB's TTL deleted it and the replica kept it on purpose. The replica
  does not record which REMOVE it ignored, so the row's own TTL value is the
  evidence; a row without one is extra.

A live table keeps changing while it is scanned, and the stream takes a moment to
deliver: what looks different may be a change in flight. Every candidate difference
is therefore read again on both sides (a strongly consistent read of the source) after
`settle` seconds, and only what still differs is reported.

`sample` (0 < f < 1) reads a fraction of a big table: the source side scans
a random f of 1000 Scan segments; the replica side checks the live rows whose key hashes
into the same fraction against the source, with BatchGetItem.

A source table with entities (README: "Single-table designs") has several replica
tables: each item is routed as the stream routes it (`Routing.versions` of its snapshot
change), and must be live, with its values and its child rows, in exactly the table of
the version that is not "moved"; a live row of its key in any other table it could be
in is extra (the difference names its table). The replica side reads the live rows of
every entity table and of the document table: a row no source item routes to is extra.
An entity table holds key columns, not the key: its rows name their source key by
running the key patterns backwards (cdc/core/entity_keys.py); a row of a pattern that
cannot be run backwards is still told extra (the full scan saw every source key) and
is shown by its key columns. Sampling is not supported there yet.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from cdc.aws import clients as aws
from cdc.aws import errors as aws_errors
from cdc.aws import wire as aws_wire
from cdc.aws.reads import batch_get, scan_pages
from cdc.aws.scans import RateLimiter, scan_limit
from cdc.config import Settings
from cdc.core.compare import (
    KINDS,
    NOT_DIFFERENCES,
    Difference,
    Key,
    VerifyReport,
    _canonical,
    _chunks,
    _in_sample,
    _json,
    _norm_key,
)
from cdc.core.decode import to_plain
from cdc.core.entities import EntityConfig, Routing
from cdc.core.entity_keys import SourceKeys
from cdc.core.errors import ConfigError, RecordError
from cdc.core.mapping import DELETED, EXTRA, ITEM, ChildSpec, ColumnConfig
from cdc.core.numbers import canonical_number
from cdc.sources.snapshots import Snapshot
from cdc.sql.drift_columns import refresh
from cdc.sql.lookup import LOOKUP_CHUNK, ReplicaLookup, differing_children, table_exists
from cdc.sql.replica import ReplicaSpec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger("cdc.verify")

STREAM_LABEL = "verify"
SAMPLE_SEGMENTS = 1000  # sampling picks Scan segments out of this many
RECHECK_LIMIT = 10_000  # more candidates than this: the replica is plainly behind


@dataclass
class _Candidate:
    av_key: dict[str, Any]  # the key as AttributeValues (boto3 client form); {}: not known
    difference: Difference
    # Entity routing: (index of the table in `Verifier.tables`, the row's key there).
    slot: tuple[int, Key] | None = None


@dataclass
class _EntityTable:
    """One replica table of a source with entities: an entity's, or the document table
    of unmatched items (`entity` None)."""

    index: int
    spec: ReplicaSpec
    lookup: ReplicaLookup
    entity: EntityConfig | None
    source_keys: SourceKeys | None  # its key columns back to the source key
    columns: tuple[ColumnConfig, ...] = ()  # declared columns (the TTL attribute's, maybe)
    exists: bool = False
    children: list[ChildSpec[Any]] = field(default_factory=list)  # those that exist

    @property
    def name(self) -> str:
        return str(self.spec.table.name)


@dataclass
class _Routed:
    """Where one source key is, and should be, in the tables of a source with entities."""

    slots: list[tuple[_EntityTable, Key]]  # every table its key could be in, with its key there
    item: bool = False  # the source item exists
    table: _EntityTable | None = None  # the table the item routes to
    key: Key = ()
    values: dict[str, Any] | None = None
    children: dict[str, list[dict[str, Any]]] | None = None
    error: str | None = None  # why the item cannot be applied


class Verifier:
    def __init__(
        self,
        client: DynamoDBClient,
        source: aws.SourceTable,
        engine: Engine,
        settings: Settings,
        *,
        sample: float | None = None,
        consistent: bool = False,
        page_size: int | None = None,
        rate: float | None = None,
        examples: int = 10,
        settle: float = 5.0,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from cdc.jobs.replicate import Replicator

        if sample is not None and not 0 < sample <= 1:
            raise ValueError("sample must be a fraction in (0, 1]")
        self.client = client
        self.source = source
        self.engine = engine
        self.sample = None if sample is None or sample >= 1 else sample
        self.consistent = consistent
        self.page_size = page_size
        self.limiter = RateLimiter(rate) if rate else None
        self.max_examples = examples
        self.settle = settle
        self.random = random.Random(seed)  # noqa: S311 (sampling, not secrets)
        self.sleep = sleep
        self.stream_arn = source.synthetic_stream_arn(STREAM_LABEL)
        self.snapshot = Snapshot(source.name, source.key_names, self.stream_arn)
        self.settings = settings
        self.replicator = Replicator(engine, settings)
        # Entity routing (README: "Single-table designs"): as the stream routes.
        self.routing: Routing[ReplicaSpec] | None = self.replicator.routing_for(source.name)
        if self.routing is not None and self.sample is not None:
            raise ConfigError(
                f"verify --sample is not supported for table {source.name!r}, whose items "
                "are routed to entity tables: verify the whole table (no --sample)"
            )
        self.spec = self._spec()
        refresh(engine, self.spec, self.replicator.backend.column_type)  # drift columns
        self.lookup = ReplicaLookup(engine, self.spec, settings.schema)
        self._tags = dict(source.keys)
        self._attribute_of = {k.column: k.attribute for k in self.spec.keys}
        self.ttl_attribute = (
            self._ttl_attribute() if self.spec.options.ttl_deletes == "ignore" else None
        )
        self.now = time.time  # epoch seconds, to tell an expired TTL
        self.tables = self._entity_tables() if self.routing is not None else []

    # --- building blocks ----------------------------------------------------------------

    def _spec(self) -> ReplicaSpec:
        """The replica table's spec, from an item of placeholder key values: the spec
        depends on the key's attributes and types, not on its values."""
        placeholders = {"S": {"S": "verify"}, "N": {"N": "0"}, "B": {"B": "AA=="}}
        item = {name: placeholders[tag] for name, tag in self.source.keys}
        return self.replicator.spec_for(self.snapshot.change(item))

    def _ttl_attribute(self) -> str | None:
        """The table's TTL attribute, for `ttl_deletes = "ignore"`: None when TTL was
        never enabled, or DescribeTimeToLive is not allowed (then a row TTL deleted from
        the source is reported as extra, with a warning saying why)."""
        try:
            response = aws.call(self.client.describe_time_to_live, TableName=self.source.name)
        except Exception as exc:
            if aws_errors.classify(exc) is not aws_errors.AwsErrorKind.SETUP:
                raise
            log.warning(
                "cannot read the TTL attribute of %s (%s): rows its TTL deleted and "
                'ttl_deletes = "ignore" kept will be reported as extra',
                self.source.name,
                exc,
            )
            return None
        description = response.get("TimeToLiveDescription") or {}
        name = description.get("AttributeName")
        return str(name) if name else None

    def _ttl_value(self, row: Mapping[str, Any], table: _EntityTable | None = None) -> Any:
        """The TTL attribute's value as the replica row holds it: in `item` (document
        mode), its own column or `extra` (typed mode); None if not held. `table`: the
        row's table, when the source has several."""
        name = self.ttl_attribute
        if name is None:
            return None
        spec = self.spec if table is None else table.spec
        if ITEM in spec.value_names:
            document = _json(row[ITEM])
            return document.get(name) if isinstance(document, dict) else None
        if table is None:
            config = self.settings.tables.get(self.source.name)
            columns = config.columns if config is not None else ()
        else:
            columns = table.columns
        for column in columns:
            if column.attribute == name and column.column in row:
                return row[column.column]
        if EXTRA in spec.value_names:
            extra = _json(row[EXTRA])
            return extra.get(name) if isinstance(extra, dict) else None
        return None

    def _kept_by_ttl(self, row: Mapping[str, Any], table: _EntityTable | None = None) -> bool:
        """A live row whose source item is gone, kept on purpose: the table ignores TTL
        deletes and the row's TTL attribute is in the past."""
        value = self._ttl_value(row, table)
        if isinstance(value, bool) or value is None:
            return False
        if isinstance(value, int | float | Decimal):
            return Decimal(value) <= Decimal(self.now())
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return moment.timestamp() <= self.now()
        return False

    def _expected(self, item: Mapping[str, Any]) -> tuple[Key, dict[str, Any]]:
        """(key, values the replica row should hold) for a source item (client form)."""
        change = self.snapshot.change(aws_wire.image_to_wire(item))
        version = self.spec.row_version(change)
        if version is None or version.values is None:  # pragma: no cover - INSERTs always
            raise RecordError("the table's mapping ignores this item")
        return _norm_key(version.key), version.values

    def _plain_key(self, av_key: Mapping[str, Any]) -> dict[str, Any]:
        wire = aws_wire.image_to_wire(av_key)
        return {name: to_plain(wire[name], name) for name, _ in self.source.keys if name in wire}

    def _av_key(self, key: Key) -> dict[str, Any]:
        """A replica key as the AttributeValues DynamoDB wants (client form)."""
        out: dict[str, Any] = {}
        for column, value in zip(self.spec.key_names, key, strict=True):
            attribute = self._attribute_of[column]
            tag = self._tags.get(attribute, "S")
            if tag == "N":
                number = value if isinstance(value, Decimal) else Decimal(str(value))
                out[attribute] = {"N": canonical_number(number)}
            elif tag == "B":
                out[attribute] = {"B": bytes(value)}
            else:
                out[attribute] = {"S": str(value)}
        return out

    def _scan(self) -> Iterator[dict[str, Any]]:
        if self.sample is None:
            segments: list[tuple[int, int] | None] = [None]
        else:
            count = max(1, round(self.sample * SAMPLE_SEGMENTS))
            chosen = sorted(self.random.sample(range(SAMPLE_SEGMENTS), count))
            segments = [(s, SAMPLE_SEGMENTS) for s in chosen]
        limit = scan_limit(self.page_size, self.limiter.rate if self.limiter else None)
        for segment in segments:
            for page in scan_pages(
                self.client,
                self.source.name,
                segment=segment,
                consistent=self.consistent,
                limit=limit,
                limiter=self.limiter,
            ):
                yield from page.items

    def _get_items(self, av_keys: Sequence[Mapping[str, Any]]) -> dict[Key, dict[str, Any]]:
        """Source items by key, strongly consistent."""
        names = self.source.key_names
        items = batch_get(
            self.client, self.source.name, av_keys, limiter=self.limiter, sleep=self.sleep
        )
        return {self._source_key({n: item[n] for n in names}): item for item in items}

    def _source_key(self, av_key: Mapping[str, Any]) -> Key:
        return _norm_key(self.spec.key_of(self.snapshot.change(aws_wire.image_to_wire(av_key))))

    def _classify(
        self,
        av_key: Mapping[str, Any],
        item: Mapping[str, Any] | None,
        row: Mapping[str, Any] | None,
    ) -> Difference | None:
        """What is wrong with one key, given the source item and the replica row."""
        key = self._plain_key(av_key)
        live = row is not None and not row[DELETED]
        if item is None:
            if not live:
                return None
            assert row is not None
            if self._kept_by_ttl(row):
                return Difference("kept", key, detail=f"{self.ttl_attribute} expired")
            return Difference("extra", key)
        try:
            replica_key, expected = self._expected(item)
        except RecordError as exc:
            return Difference("unreplicable", key, detail=str(exc))
        too_long = self.lookup.key_too_long(replica_key)
        if too_long is not None:
            return Difference("unreplicable", key, detail=too_long)
        if not live:
            return Difference("missing", key)
        assert row is not None
        attributes = self.lookup.differing(expected, row)
        return Difference("different", key, attributes) if attributes else None

    # --- the run -------------------------------------------------------------------------

    def run(self) -> VerifyReport:
        started = time.monotonic()
        if self.routing is not None:
            return self._run_entities(started)
        report = VerifyReport(self.source.name, self.spec.qualified_name, self.sample)
        found = _Found()
        exists = self.lookup.exists()
        seen = self._source_pass(report, found, exists=exists)
        if exists:
            self._replica_pass(report, found, seen)
        return self._finish(report, found, exists, self._recheck, started)

    def _finish(
        self,
        report: VerifyReport,
        found: _Found,
        exists: bool,
        recheck: Callable[[Sequence[_Candidate]], list[Difference]],
        started: float,
    ) -> VerifyReport:
        """The report from the candidates found: read again (`recheck`), counted, and
        missing rows a pending dead letter explains made unreplicable."""
        # No replica table: everything is missing, and nothing to read again.
        if found.candidates and found.complete and exists:
            differences = recheck(found.candidates)
            report.rechecked = True
            report.counts = dict.fromkeys(KINDS, 0)
            report.counts["kept"] = found.counts["kept"]
            for difference in differences:
                report.counts[difference.kind] += 1
        else:
            differences = [c.difference for c in found.candidates]
            report.counts = found.counts
        moved = len(self._dead_lettered(differences))
        report.counts["missing"] -= moved
        report.counts["unreplicable"] += moved
        for difference in [*found.kept, *differences]:
            examples = report.examples[difference.kind]
            if len(examples) < self.max_examples:
                examples.append(difference)
        report.seconds = time.monotonic() - started
        return report

    def _dead_lettered(self, differences: Sequence[Difference]) -> list[Difference]:
        """The missing items the stream (or a backfill) dead-lettered: a pending dead
        letter of this table with the same key says why the replica lacks them. They
        become unreplicable, naming the letter; returns those changed."""
        missing = [d for d in differences if d.kind == "missing"]
        if not missing:
            return []
        letters = self.lookup.pending_letters(self.source.name)
        changed = []
        for difference in missing:
            letter = letters.get(_canonical(difference.key))
            if letter is not None:
                difference.kind = "unreplicable"
                difference.detail = letter
                changed.append(difference)
        return changed

    def _source_pass(self, report: VerifyReport, found: _Found, *, exists: bool) -> set[Key]:
        """Source → replica: every (sampled) source item has its row, with its values.
        Returns the keys seen (full scans only: they tell the extra rows apart)."""
        seen: set[Key] = set()
        names = self.source.key_names
        for page in _chunks(self._scan(), LOOKUP_CHUNK):
            keyed: list[tuple[Key | None, dict[str, Any], dict[str, Any]]] = []
            for item in page:
                av_key = {n: item[n] for n in names if n in item}
                try:
                    key: Key | None = self._source_key(av_key)
                except RecordError:
                    key = None  # classified as unreplicable below
                keyed.append((key, av_key, item))
            valid = [k for k, _, _ in keyed if k is not None]
            rows = self.lookup.rows(valid) if exists and valid else {}
            for key, av_key, item in keyed:
                report.source_items += 1
                if key is not None and self.sample is None:
                    seen.add(key)
                row = rows.get(key) if key is not None else None
                found.note(av_key, self._classify(av_key, item, row))
        return seen

    def _replica_pass(self, report: VerifyReport, found: _Found, seen: set[Key]) -> None:
        """Replica → source: no live row without its source item."""
        if self.sample is None:

            def unseen() -> Iterator[Key]:
                for key in self.lookup.live_keys():
                    report.replica_rows += 1
                    if key not in seen:
                        yield key

            for chunk in _chunks(unseen(), LOOKUP_CHUNK):
                rows = self.lookup.rows(chunk)  # a kept row is told by its values
                for key in chunk:
                    av_key = self._av_key(key)
                    found.note(av_key, self._classify(av_key, None, rows.get(key)))
            return
        sampled = [k for k in self.lookup.live_keys() if _in_sample(k, self.sample)]
        report.replica_rows = len(sampled)
        for chunk in _chunks(sampled, LOOKUP_CHUNK):
            av_keys = [self._av_key(k) for k in chunk]
            items = self._get_items(av_keys)
            rows = self.lookup.rows(chunk)
            for key, av_key in zip(chunk, av_keys, strict=True):
                if key not in items:  # items that exist were compared by the scan, or not sampled
                    found.note(av_key, self._classify(av_key, None, rows.get(key)))

    def _recheck(self, candidates: Sequence[_Candidate]) -> list[Difference]:
        """Read every candidate again, both sides, after `settle` seconds: a change in
        flight is not a difference."""
        if self.settle > 0:
            self.sleep(self.settle)
        confirmed: list[Difference] = []
        for chunk in _chunks(candidates, LOOKUP_CHUNK):
            recheck = [c for c in chunk if c.difference.kind != "unreplicable"]
            # An item the mapping cannot apply is no matter of timing.
            confirmed.extend(c.difference for c in chunk if c.difference.kind == "unreplicable")
            items = self._get_items([c.av_key for c in recheck])
            keys = [self._source_key(c.av_key) for c in recheck]
            rows = self.lookup.rows(keys)
            for candidate, key in zip(recheck, keys, strict=True):
                difference = self._classify(candidate.av_key, items.get(key), rows.get(key))
                if difference is not None:
                    confirmed.append(difference)
        return confirmed

    # --- a source with entities (README: "Single-table designs") -------------------------

    def _entity_tables(self) -> list[_EntityTable]:
        """The source's entity tables, in declaration order, then its document table of
        unmatched items (unmatched = "document")."""
        routing = self.routing
        assert routing is not None
        tables: list[_EntityTable] = []
        for entity, spec in zip(routing.entities, routing.specs, strict=True):
            refresh(self.engine, spec, self.replicator.backend.column_type)
            source_keys = SourceKeys(entity, self._tags)
            if source_keys.why_not is not None:
                log.warning(
                    "%s: live rows of table %s whose source item is gone are shown by "
                    "their key columns, not by their source key",
                    source_keys.why_not,
                    spec.table.name,
                )
            tables.append(
                _EntityTable(
                    len(tables),
                    spec,
                    ReplicaLookup(self.engine, spec, self.settings.schema),
                    entity,
                    source_keys,
                    tuple(entity.columns),
                )
            )
        if routing.unmatched == "document":
            tables.append(_EntityTable(len(tables), self.spec, self.lookup, None, None))
        return tables

    def _run_entities(self, started: float) -> VerifyReport:
        for table in self.tables:
            table.exists = table.lookup.exists()
            table.children = [
                c
                for c in table.spec.children
                if table.exists and table_exists(self.engine, c.table)
            ]
        names = ", ".join(t.spec.qualified_name for t in self.tables)
        report = VerifyReport(self.source.name, names, self.sample)
        found = _Found()
        exists = any(t.exists for t in self.tables)
        accounted = self._entity_source_pass(report, found)
        if exists:
            self._entity_replica_pass(report, found, accounted)
        return self._finish(report, found, exists, self._entity_recheck, started)

    def _route(self, av_key: Mapping[str, Any], item: Mapping[str, Any] | None) -> _Routed:
        """Where the key's rows may be, and where the item (if any) should be, with its
        values and child rows: the stream's routing of its snapshot change."""
        assert self.routing is not None
        try:
            change = self.snapshot.change(aws_wire.image_to_wire(item or av_key))
        except RecordError as exc:
            return _Routed([], item is not None, error=str(exc))
        slots = []
        for table in self.tables:
            if table.entity is not None and table.entity.parse(change.keys) is None:
                continue
            try:
                slots.append((table, _norm_key(table.spec.key_of(change))))
            except RecordError:
                continue  # a key this table cannot hold: no row of it there
        routed = _Routed(slots, item is not None)
        if item is None:
            return routed
        try:
            versions = self.routing.versions(change)
        except RecordError as exc:
            routed.error = str(exc)
            return routed
        for spec, version in versions:
            if version.moved:
                continue
            if not spec.materialize(version):
                routed.error = version.error[1] if version.error else "cannot be applied"
                return routed
            routed.table = next((t for t in self.tables if t.spec is spec), None)
            routed.key = _norm_key(version.key)
            routed.values = version.values or {}
            routed.children = version.children or {}
        return routed

    def _slot_av_key(self, table: _EntityTable, key: Key) -> dict[str, Any]:
        """The source key of a row of `table` (client form); {} when its key columns do
        not give it (a pattern that cannot be run backwards)."""
        if table.source_keys is None:
            return self._av_key(key)  # the document table: keyed by the source key
        return table.source_keys.source_key(key) or {}

    def _read(
        self, table: _EntityTable, keys: Sequence[Key]
    ) -> tuple[dict[Key, Mapping[str, Any]], dict[Key, dict[str, list[dict[str, Any]]]]]:
        """The rows of `keys` in `table`, and the child rows of those live."""
        if not table.exists or not keys:
            return {}, {}
        rows = table.lookup.rows(list(dict.fromkeys(keys)))
        children: dict[Key, dict[str, list[dict[str, Any]]]] = {}
        live = [k for k, row in rows.items() if not row[DELETED]]
        for child in table.children if live else ():
            for key, found in table.lookup.child_rows(child, live).items():
                children.setdefault(key, {})[child.qualified_name] = found
        return rows, children

    def _read_slots(
        self, slots: Sequence[tuple[_EntityTable, Key]]
    ) -> dict[tuple[int, Key], tuple[Mapping[str, Any] | None, dict[str, list[dict[str, Any]]]]]:
        by_table: dict[int, list[Key]] = {}
        for table, key in slots:
            by_table.setdefault(table.index, []).append(key)
        out: dict[
            tuple[int, Key], tuple[Mapping[str, Any] | None, dict[str, list[dict[str, Any]]]]
        ] = {}
        for index, keys in by_table.items():
            rows, children = self._read(self.tables[index], keys)
            for key in keys:
                out[(index, key)] = (rows.get(key), children.get(key, {}))
        return out

    def _classify_slot(
        self,
        av_key: Mapping[str, Any],
        routed: _Routed,
        table: _EntityTable,
        key: Key,
        row: Mapping[str, Any] | None,
        children: Mapping[str, list[dict[str, Any]]],
    ) -> Difference | None:
        """What is wrong with one key in one table of a source with entities. An item
        that cannot be applied is reported once, by the caller."""
        if routed.error is not None:
            return None
        live = row is not None and not row[DELETED]
        shown, detail = self._shown(av_key, table, key)
        if routed.table is table and routed.key == key:
            too_long = table.lookup.key_too_long(key)
            if too_long is not None:
                return Difference("unreplicable", shown, detail=too_long, table=table.name)
            if not live:
                return Difference("missing", shown, table=table.name)
            assert row is not None
            assert routed.values is not None
            attributes = table.lookup.differing(routed.values, row)
            for child in table.children:
                attributes.extend(
                    differing_children(
                        child,
                        (routed.children or {}).get(child.qualified_name, []),
                        children.get(child.qualified_name, []),
                    )
                )
            if attributes:
                return Difference("different", shown, attributes, table=table.name)
            return None
        if not live:
            return None
        assert row is not None
        if not routed.item:
            if self._kept_by_ttl(row, table):
                return Difference(
                    "kept", shown, detail=f"{self.ttl_attribute} expired", table=table.name
                )
        elif routed.table is not None:
            detail = f"the item is in {routed.table.name}"
        return Difference("extra", shown, detail=detail, table=table.name)

    def _shown(
        self, av_key: Mapping[str, Any], table: _EntityTable, key: Key
    ) -> tuple[dict[str, Any], str | None]:
        """A row's key as a difference shows it: its source key, or, when its key
        columns do not give one, the key columns (and a detail saying why)."""
        if av_key:
            return self._plain_key(av_key), None
        why = (table.source_keys.why_not if table.source_keys else None) or (
            "no source key of the key patterns gives these key columns"
        )
        return dict(zip(table.spec.key_names, key, strict=True)), f"source key unknown: {why}"

    def _orphan(
        self, av_key: Mapping[str, Any], table: _EntityTable, key: Key, child: ChildSpec[Any]
    ) -> Difference:
        shown, detail = self._shown(av_key, table, key)
        reason = f"child rows of no live row of {table.name}"
        return Difference(
            "extra",
            shown,
            detail=f"{reason}; {detail}" if detail else reason,
            table=child.table.name,
        )

    def _entity_source_pass(self, report: VerifyReport, found: _Found) -> list[set[Key]]:
        """Source → replica: every source item is live, with its values and child rows,
        in the one table it routes to, and in no other. Returns, per table, the keys
        looked at there (the replica pass looks at the others)."""
        accounted: list[set[Key]] = [set() for _ in self.tables]
        names = self.source.key_names
        for page in _chunks(self._scan(), LOOKUP_CHUNK):
            routed = []
            for item in page:
                av_key = {n: item[n] for n in names if n in item}
                routed.append((av_key, self._route(av_key, item)))
            read = self._read_slots([slot for _, r in routed for slot in r.slots])
            for av_key, r in routed:
                report.source_items += 1
                if r.error is not None:
                    shown = self._plain_key(av_key)
                    found.note(av_key, Difference("unreplicable", shown, detail=r.error))
                for table, key in r.slots:
                    accounted[table.index].add(key)
                    row, children = read[(table.index, key)]
                    difference = self._classify_slot(av_key, r, table, key, row, children)
                    found.note(av_key, difference, (table.index, key))
        return accounted

    def _entity_replica_pass(
        self, report: VerifyReport, found: _Found, accounted: Sequence[set[Key]]
    ) -> None:
        """Replica → source: a live row of any of the tables whose key no source item has
        there is extra (the full scan saw every source key)."""
        for table in self.tables:
            if not table.exists:
                continue

            def unseen(table: _EntityTable = table) -> Iterator[Key]:
                for key in table.lookup.live_keys():
                    report.replica_rows += 1
                    if key not in accounted[table.index]:
                        yield key

            for chunk in _chunks(unseen(), LOOKUP_CHUNK):
                rows, _ = self._read(table, chunk)
                for key in chunk:
                    av_key = self._slot_av_key(table, key)
                    routed = _Routed([(table, key)])
                    difference = self._classify_slot(av_key, routed, table, key, rows.get(key), {})
                    found.note(av_key, difference, (table.index, key))
            # Child rows without a live parent (the apply path deletes them with it).
            for child in table.children:
                for key in table.lookup.orphan_keys(child):
                    av_key = self._slot_av_key(table, key)
                    found.note(av_key, self._orphan(av_key, table, key, child), (table.index, key))

    def _entity_recheck(self, candidates: Sequence[_Candidate]) -> list[Difference]:
        """`_recheck` for a source with entities: each candidate's key read again in the
        source, and its row in its table, after `settle` seconds."""
        if self.settle > 0:
            self.sleep(self.settle)
        confirmed: list[Difference] = []
        reported: set[Any] = set()  # the keys found unreplicable, each reported once
        for chunk in _chunks(candidates, LOOKUP_CHUNK):
            confirmed.extend(c.difference for c in chunk if c.difference.kind == "unreplicable")
            recheck = [c for c in chunk if c.difference.kind != "unreplicable"]
            unique = {_canonical(c.av_key): c.av_key for c in recheck if c.av_key}
            items = self._get_items(list(unique.values()))
            routes = {
                canonical: self._route(av_key, items.get(self._source_key(av_key)))
                for canonical, av_key in unique.items()
            }
            slots = [(self.tables[c.slot[0]], c.slot[1]) for c in recheck if c.slot is not None]
            read = self._read_slots(slots)
            for candidate in recheck:
                if candidate.slot is None:  # pragma: no cover - every candidate here has one
                    continue
                index, key = candidate.slot
                table = self.tables[index]
                child = next(
                    (c for c in table.children if c.table.name == candidate.difference.table),
                    None,
                )
                if child is not None:  # child rows without a live parent: still so?
                    row, _ = read[(index, key)]
                    if (row is None or row[DELETED]) and table.lookup.child_rows(child, [key]):
                        confirmed.append(self._orphan(candidate.av_key, table, key, child))
                    continue
                routed = (
                    routes[_canonical(candidate.av_key)]
                    if candidate.av_key
                    else _Routed([(self.tables[index], key)])
                )
                if routed.error is not None:
                    canonical = _canonical(candidate.av_key)
                    if canonical not in reported:
                        reported.add(canonical)
                        shown = self._plain_key(candidate.av_key)
                        confirmed.append(Difference("unreplicable", shown, detail=routed.error))
                    continue
                row, children = read[(index, key)]
                difference = self._classify_slot(
                    candidate.av_key, routed, self.tables[index], key, row, children
                )
                if difference is not None:
                    confirmed.append(difference)
        return confirmed


@dataclass
class _Found:
    """Candidate differences, kept for the recheck up to RECHECK_LIMIT."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    candidates: list[_Candidate] = field(default_factory=list)
    complete: bool = True  # every candidate kept
    kept: list[Difference] = field(default_factory=list)  # examples of TTL-kept rows

    def note(
        self,
        av_key: Mapping[str, Any],
        difference: Difference | None,
        slot: tuple[int, Key] | None = None,
    ) -> None:
        if difference is None:
            return
        self.counts[difference.kind] += 1
        if difference.kind in NOT_DIFFERENCES:
            # Nothing in flight to read again, and there may be many: examples only.
            if len(self.kept) < RECHECK_LIMIT:
                self.kept.append(difference)
            return
        if len(self.candidates) < RECHECK_LIMIT:
            self.candidates.append(_Candidate(dict(av_key), difference, slot))
        else:
            self.complete = False
