"""What happened to a batch, counted once. `BatchResult` holds each record's `Outcome`
and the rows each (stream, table) wrote; the handler's response, the summary, the
per-table counts of the log line and the metrics, and the checkpoints are views of it.
`Prepared.settle` builds it from what the transaction did. Dead letters are in
cdc/core/dead_letters.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import cached_property
from typing import Any

from cdc.core.change import Change, RecordFormat
from cdc.core.dead_letters import DeadLetter
from cdc.core.mapping import RowVersion, TableSpec
from cdc.core.plan import TablePlan
from cdc.core.versions import sequence_of

# (stream ARN, source table): what the log line and the metrics count by.
Group = tuple[str, str]
UNNAMED: Group = ("", "")  # a record too broken to name its stream and table


class Outcome(Enum):
    """What became of one record (README: "What happens to each record"). Written and
    stale are one outcome here: a statement says how many rows it changed, not which,
    so the rows written are counted per (stream, table) in `BatchResult.written`."""

    SETTLED = "settled"  # committed, nothing left to do: written, or found stale
    DEAD_LETTERED = "dead_lettered"  # committed to cdc_dead_letters
    FAILED = "failed"  # not committed: reported to the source for redelivery


@dataclass(frozen=True)
class TableCounts:
    """The outcomes of one (stream, table)'s records in one batch: the log line's
    `by_table` entry, the metrics' dimensions. Derived by `BatchResult.by_table`."""

    records: int = 0
    applied: int = 0  # written: the rows they changed
    stale: int = 0  # settled but changed nothing: older, duplicate, superseded, ignored
    dead_lettered: int = 0
    failed: int = 0
    max_lag_s: float | None = None  # now - the oldest event time, if records carry one
    open_gaps: int | None = None  # the table's open gaps (README: Gaps and repair)


@dataclass(frozen=True)
class StreamProgress:
    """What one batch adds to a stream's row of `cdc_checkpoints`. Derived by
    `BatchResult.checkpoints`."""

    stream_arn: str
    shard_id: str = ""
    last_sequence: int = 0
    last_event_time: datetime | None = None
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    # The source's own position when it is not the version (a Kinesis sequenceNumber:
    # up to 128 digits, the larger is the longer, then the greater text).
    last_position: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """A batch's outcome, counted once: every record's `Outcome` (by its index in the
    batch), the changes of those that parsed (each names its stream and table) and the
    rows written per (stream, table). Every count is a view of these."""

    outcomes: list[Outcome]
    records: Sequence[Any]
    changes: Sequence[Change] = ()  # the records that parsed, each knowing its index
    written: Mapping[Group, int] = field(default_factory=dict)  # rows changed
    error: str | None = None  # why the batch (or part of it) was reported
    tables: list[str] = field(default_factory=list)
    seconds: float = 0.0
    measured_at: datetime | None = None  # the moment replication lag is measured to
    # The records' format, which names the identifiers of failed records.
    source: RecordFormat | None = None
    # Open gaps per source table after the batch committed (README: Gaps and repair);
    # None when it did not commit.
    open_gaps: Mapping[str, int] | None = None

    # --- the totals ---------------------------------------------------------------------

    @property
    def applied(self) -> int:
        """Records written: the rows the batch changed."""
        return sum(self.written.values())

    @property
    def stale(self) -> int:
        """Records settled without a change: older, duplicate, superseded, ignored."""
        return self.outcomes.count(Outcome.SETTLED) - self.applied

    @property
    def dead_lettered(self) -> int:
        return self.outcomes.count(Outcome.DEAD_LETTERED)

    @property
    def failed(self) -> int:
        return self.outcomes.count(Outcome.FAILED)

    @property
    def max_lag_s(self) -> float | None:
        lags = [c.max_lag_s for c in self.by_table.values() if c.max_lag_s is not None]
        return max(lags) if lags else None

    # --- the views ----------------------------------------------------------------------

    @property
    def item_failures(self) -> list[str]:
        """What the source needs to deliver the records not handled again: for Lambda,
        the SequenceNumber of each (see `failure_identifiers` in
        cdc/sources/dynamodb_streams/records.py for a record without a usable one).
        Without a source, "" when anything failed: retry the whole batch."""
        failed = [i for i, o in enumerate(self.outcomes) if o is Outcome.FAILED]
        if self.source is None:
            return [""] if failed else []
        return self.source.failure_identifiers(self.records, failed)

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": s} for s in self.item_failures]}

    def summary(self) -> dict[str, Any]:
        return {
            "records": len(self.outcomes),
            "applied": self.applied,
            "stale": self.stale,
            "dead_lettered": self.dead_lettered,
            "failed": self.failed,
            "tables": self.tables,
            "seconds": round(self.seconds, 4),
            "max_lag_s": None if self.max_lag_s is None else round(self.max_lag_s, 3),
            **({"error": self.error} if self.error else {}),
        }

    @cached_property
    def by_table(self) -> dict[Group, TableCounts]:
        """The counts per (stream, table), sorted; ("", "") for records too broken to
        name theirs. The parts add up to the totals."""
        groups = [UNNAMED] * len(self.outcomes)
        earliest: dict[Group, datetime] = {}
        for change in self.changes:
            group = groups[change.index] = (change.stream_arn, change.source_table)
            moment = change.event_time
            if moment is not None:
                seen = earliest.get(group)
                if seen is None or moment < seen:
                    earliest[group] = moment
        records = Counter(groups)
        dead: Counter[Group] = Counter()
        failed: Counter[Group] = Counter()
        for index, outcome in enumerate(self.outcomes):
            if outcome is not Outcome.SETTLED:  # the few: a loop, not a count per record
                (dead if outcome is Outcome.DEAD_LETTERED else failed)[groups[index]] += 1
        now = self.measured_at
        counts = {}
        for group in sorted(records):
            applied, moment = self.written.get(group, 0), earliest.get(group)
            counts[group] = TableCounts(
                records=records[group],
                applied=applied,
                stale=records[group] - dead[group] - failed[group] - applied,
                dead_lettered=dead[group],
                failed=failed[group],
                max_lag_s=(
                    None
                    if moment is None or now is None
                    else max(0.0, (now - moment).total_seconds())
                ),
                open_gaps=(
                    None
                    if self.open_gaps is None or not group[1]
                    else self.open_gaps.get(group[1], 0)
                ),
            )
        return counts

    def checkpoints(self, shard_id: str = "") -> list[StreamProgress]:
        """What the batch adds to `cdc_checkpoints`, one row per stream (sorted), counting
        only what was committed: a record reported for redelivery moves no checkpoint.
        `shard_id` names the shard when the caller knows it (`cdc tail`)."""
        outcomes = self.outcomes
        committed: dict[str, list[Change]] = {}
        for change in self.changes:
            if outcomes[change.index] is not Outcome.FAILED:
                committed.setdefault(change.stream_arn, []).append(change)
        applied: Counter[str] = Counter()
        for (stream, _), rows in self.written.items():
            applied[stream] += rows
        progress = []
        for stream in sorted(committed):
            changes = committed[stream]
            times = [c.event_time for c in changes if c.event_time is not None]
            dead = sum(1 for c in changes if outcomes[c.index] is Outcome.DEAD_LETTERED)
            # A position the version does not hold (a Kinesis sequenceNumber; a
            # DynamoDB Streams version holds its sequence number: cdc/core/versions.py).
            positions = [
                c.sequence_number
                for c in changes
                if c.sequence_number != str(sequence_of(c.sequence))
            ]
            progress.append(
                StreamProgress(
                    stream,
                    shard_id,
                    last_sequence=max(c.sequence for c in changes),
                    last_event_time=max(times) if times else None,
                    applied=applied[stream],
                    stale=len(changes) - dead - applied[stream],
                    dead_lettered=dead,
                    last_position=max(positions, key=lambda p: (len(p), p), default=None),
                )
            )
        return progress


@dataclass
class Prepared:
    """The pure part of a batch: what to write, what is already known to be bad."""

    plans: list[TablePlan]
    dead: list[DeadLetter]
    ignored: list[Change]  # e.g. TTL expiries the table ignores: settled, stale
    changes: list[Change]
    records: Sequence[Any]
    unreadable: list[int] = field(default_factory=list)  # hydration failed: report them

    def dead_letter(
        self, row: RowVersion, spec: TableSpec[Any], kind: str, message: str
    ) -> DeadLetter:
        change = row.change
        return DeadLetter(change.index, self.records[change.index], kind, message, change, spec)

    def failed(self, error: str) -> BatchResult:
        """Nothing committed: every record is reported."""
        return BatchResult(
            [Outcome.FAILED] * len(self.records), self.records, self.changes, error=error
        )

    def settle(
        self,
        wrote: Iterable[tuple[TablePlan, int]],
        dead: Iterable[DeadLetter],
        *,
        unstored: Iterable[DeadLetter] = (),
        held: Mapping[int, str] | None = None,
        dead_letter_error: str | None = None,
    ) -> BatchResult:
        """The batch's result once its transaction has done its work: `wrote` holds each
        table written and how many rows it changed, `dead` every dead letter, `unstored`
        those the database could not store (their records are reported), `held` the
        records of tables the database cannot take as the mapping says (reported, with
        why). Every other record is settled."""
        outcomes = [Outcome.SETTLED] * len(self.records)
        error = None
        for index in self.unreadable:
            outcomes[index] = Outcome.FAILED
            error = "items could not be read from DynamoDB for hydration"
        for index, why in (held or {}).items():
            outcomes[index] = Outcome.FAILED
            error = why
        for letter in dead:
            outcomes[letter.index] = Outcome.DEAD_LETTERED
        for letter in unstored:
            outcomes[letter.index] = Outcome.FAILED
        if dead_letter_error is not None:
            error = f"dead letters not written: {dead_letter_error}"
        written: Counter[Group] = Counter()
        for table_plan, changed in wrote:
            written.update(_share(table_plan, changed, outcomes))
        return BatchResult(outcomes, self.records, self.changes, dict(written), error=error)


def _share(table_plan: TablePlan, changed: int, outcomes: Sequence[Outcome]) -> dict[Group, int]:
    """The rows a table's statements changed, per (stream, table). A statement says how
    many, not which: when one table's settled records come from several streams (a
    replay or a redrive mixing a table's old and new stream), the count is shared out
    in stream order, never more to a stream than its settled records."""
    if not changed or not table_plan.rows:
        return {}
    versions = (*table_plan.rows, *table_plan.superseded)
    first = table_plan.rows[0].change
    if all(row.change.stream_arn == first.stream_arn for row in versions):
        return {(first.stream_arn, first.source_table): changed}  # one stream: all its own
    settled: Counter[Group] = Counter(
        (row.change.stream_arn, row.change.source_table)
        for row in versions
        if outcomes[row.change.index] is Outcome.SETTLED
    )
    shares: Counter[Group] = Counter()
    left = changed
    for group in sorted(settled):
        shares[group] = min(left, settled[group])
        left -= shares[group]
    # More than it settled: the database's count stands.
    shares[(first.stream_arn, first.source_table)] += left
    return shares
