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
from cdc.core.errors import RecordError
from cdc.core.mapping import DELETED, EXTRA, ITEM
from cdc.core.numbers import canonical_number
from cdc.sources.snapshots import Snapshot
from cdc.sql.drift_columns import refresh
from cdc.sql.lookup import LOOKUP_CHUNK, ReplicaLookup
from cdc.sql.replica import ReplicaSpec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger("cdc.verify")

STREAM_LABEL = "verify"
SAMPLE_SEGMENTS = 1000  # sampling picks Scan segments out of this many
RECHECK_LIMIT = 10_000  # more candidates than this: the replica is plainly behind


@dataclass
class _Candidate:
    av_key: dict[str, Any]  # the key as AttributeValues (boto3 client form)
    difference: Difference


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
        self.spec = self._spec()
        refresh(engine, self.spec, self.replicator.backend.column_type)  # drift columns
        self.lookup = ReplicaLookup(engine, self.spec, settings.schema)
        self._tags = dict(source.keys)
        self._attribute_of = {k.column: k.attribute for k in self.spec.keys}
        self.ttl_attribute = (
            self._ttl_attribute() if self.spec.options.ttl_deletes == "ignore" else None
        )
        self.now = time.time  # epoch seconds, to tell an expired TTL

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

    def _ttl_value(self, row: Mapping[str, Any]) -> Any:
        """The TTL attribute's value as the replica row holds it: in `item` (document
        mode), its own column or `extra` (typed mode); None if not held."""
        name = self.ttl_attribute
        if name is None:
            return None
        if ITEM in self.spec.value_names:
            document = _json(row[ITEM])
            return document.get(name) if isinstance(document, dict) else None
        config = self.settings.tables.get(self.source.name)
        for column in config.columns if config is not None else ():
            if column.attribute == name and column.column in row:
                return row[column.column]
        if EXTRA in self.spec.value_names:
            extra = _json(row[EXTRA])
            return extra.get(name) if isinstance(extra, dict) else None
        return None

    def _kept_by_ttl(self, row: Mapping[str, Any]) -> bool:
        """A live row whose source item is gone, kept on purpose: the table ignores TTL
        deletes and the row's TTL attribute is in the past."""
        value = self._ttl_value(row)
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
        report = VerifyReport(self.source.name, self.spec.qualified_name, self.sample)
        found = _Found()
        exists = self.lookup.exists()
        seen = self._source_pass(report, found, exists=exists)
        if exists:
            self._replica_pass(report, found, seen)
        # No replica table: everything is missing, and nothing to read again.
        if found.candidates and found.complete and exists:
            differences = self._recheck(found.candidates)
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


@dataclass
class _Found:
    """Candidate differences, kept for the recheck up to RECHECK_LIMIT."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    candidates: list[_Candidate] = field(default_factory=list)
    complete: bool = True  # every candidate kept
    kept: list[Difference] = field(default_factory=list)  # examples of TTL-kept rows

    def note(self, av_key: Mapping[str, Any], difference: Difference | None) -> None:
        if difference is None:
            return
        self.counts[difference.kind] += 1
        if difference.kind in NOT_DIFFERENCES:
            # Nothing in flight to read again, and there may be many: examples only.
            if len(self.kept) < RECHECK_LIMIT:
                self.kept.append(difference)
            return
        if len(self.candidates) < RECHECK_LIMIT:
            self.candidates.append(_Candidate(dict(av_key), difference))
        else:
            self.complete = False
