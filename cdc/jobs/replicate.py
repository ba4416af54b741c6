"""The replicator of Lambda events: cdc/sql/replicator.py's, given the records of either
source (cdc/sources/formats.py: DynamoDB Streams and Kinesis Data Streams for DynamoDB),
the source and tie checks of cdc/jobs/sources.py and, when a table asks for hydration, a
DynamoDB reader (cdc/aws/hydrate.py, imported only then: boto3 stays out of a cold
start that does not need it)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cdc.core.deadline import Deadline
from cdc.core.outcomes import BatchResult, Prepared
from cdc.jobs.sources import SourceGuard, resolve_ties
from cdc.sources.formats import EVENT_RECORDS
from cdc.sql.replicator import Replicator as SqlReplicator
from cdc.sql.retry import WRITE_BATCH, RetryPolicy

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cdc.config import Settings
    from cdc.core.change import RecordFormat


def _new_hydrator(region: str | None) -> Any:
    from cdc.aws.clients import Clients
    from cdc.aws.hydrate import Hydrator  # boto3 only when a table asks for it

    return Hydrator(Clients(region))


class Replicator(SqlReplicator):
    """Applies batches of records to one database: Lambda events' records of either
    source unless another format is given (a backfill's snapshot items, say)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        policy: RetryPolicy = WRITE_BATCH,
        hydrator: Any = None,
        records: RecordFormat = EVENT_RECORDS,
    ) -> None:
        super().__init__(
            engine,
            settings,
            policy,
            hydrator,
            records=records,
            new_hydrator=lambda: _new_hydrator(settings.region),
        )
        self.sources = SourceGuard()

    def _write(self, prepared: Prepared, deadline: Deadline, shard_id: str) -> BatchResult:
        """The source and tie checks (cdc/jobs/sources.py), then the write. They read
        the database (and, to settle a tie, DynamoDB), so they run inside the batch's
        retries: a transient error is retried like one of the write itself."""
        if not prepared.plans:
            return super()._write(prepared, deadline, shard_id)
        self.replica_tables.ensure_bookkeeping()
        checked = resolve_ties(self, self.sources.check(self, prepared), deadline)
        result = super()._write(checked, deadline, shard_id)
        if set(checked.unreadable) - set(prepared.unreadable) and not prepared.unreadable:
            # Records of a tie whose item could not be read: reported, saying so.
            result = replace(result, error="items could not be read from DynamoDB to settle a tie")
        return result
