"""The replicator of Lambda events: cdc/sql/replicator.py's, given the records of either
source (cdc/sources/events.py: DynamoDB Streams and Kinesis Data Streams for DynamoDB),
the source and tie checks of cdc/jobs/sources.py and, when a table asks for hydration, a
DynamoDB reader (cdc/aws/hydrate.py, imported only then: boto3 stays out of a cold
start that does not need it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdc.core.deadline import Deadline
from cdc.core.outcomes import Prepared, Written
from cdc.jobs.sources import SourceGuard, resolve_ties
from cdc.sources.events import EVENT_RECORDS
from cdc.sql.replicator import Replicator as SqlReplicator
from cdc.sql.retry import WRITE_BATCH, RetryPolicy

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cdc.config import Settings


def _new_hydrator() -> Any:
    from cdc.aws.hydrate import Hydrator  # boto3 only when a table asks for it

    return Hydrator()


class Replicator(SqlReplicator):
    """Applies batches of DynamoDB Streams or Kinesis records (Lambda's shape) to one
    database."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        policy: RetryPolicy = WRITE_BATCH,
        hydrator: Any = None,
    ) -> None:
        super().__init__(
            engine,
            settings,
            policy,
            hydrator,
            records=EVENT_RECORDS,
            new_hydrator=_new_hydrator,
        )
        self.sources = SourceGuard()

    def _write(self, prepared: Prepared, deadline: Deadline, shard_id: str) -> Written:
        """The source and tie checks (cdc/jobs/sources.py), then the write. They read
        the database (and, to settle a tie, DynamoDB), so they run inside the batch's
        retries: a transient error is retried like one of the write itself."""
        if not prepared.plans:
            return super()._write(prepared, deadline, shard_id)
        self._ensure_bookkeeping()
        checked = resolve_ties(self, self.sources.check(self, prepared), deadline)
        written = super()._write(checked, deadline, shard_id)
        for index in set(checked.unreadable) - set(prepared.unreadable):
            written.reported.setdefault(
                index, "items could not be read from DynamoDB to settle a tie"
            )
        return written
