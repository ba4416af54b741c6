"""The replicator of Lambda events: cdc/sql/replicator.py's, given the records of either
source (cdc/sources/events.py: DynamoDB Streams and Kinesis Data Streams for DynamoDB),
the source and tie checks of cdc/jobs/sources.py and, when a table asks for hydration, a
DynamoDB reader (cdc/aws/hydrate.py, imported only then: boto3 stays out of a cold
start that does not need it)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cdc.core.deadline import Deadline
from cdc.core.outcomes import Prepared
from cdc.jobs.sources import SourceGuard, resolve_ties
from cdc.sources.events import EVENT_RECORDS
from cdc.sql.replicator import Replicator as SqlReplicator
from cdc.sql.retry import WRITE_BATCH, RetryPolicy

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cdc.config import Settings

log = logging.getLogger("cdc")


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

    def prepare(self, records: Sequence[Any], deadline: Deadline | None = None) -> Prepared:
        prepared = super().prepare(records, deadline)
        if not prepared.plans:
            return prepared
        try:
            self._ensure_bookkeeping()
            prepared = self.sources.check(self, prepared)
            return resolve_ties(self, prepared, deadline)
        except Exception as exc:
            # The database (or DynamoDB) could not be asked: nothing is written by
            # guesswork; the planned records are reported for redelivery.
            log.error("source and tie checks failed, records will be redelivered: %s", exc)
            planned = {row.change.index for p in prepared.plans for row in (*p.rows, *p.superseded)}
            return Prepared(
                [],
                prepared.dead,
                prepared.ignored,
                prepared.changes,
                prepared.records,
                sorted({*prepared.unreadable, *planned}),
            )
