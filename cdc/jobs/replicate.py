"""The replicator of DynamoDB stream records: cdc/sql/replicator.py's, given the Lambda
record format (cdc/sources/dynamodb_streams/records.py) and, when a table asks for
hydration, a DynamoDB reader (cdc/aws/hydrate.py, imported only then: boto3 stays out
of a cold start that does not need it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdc.sources.dynamodb_streams.records import LAMBDA_RECORDS
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
    """Applies batches of records to one database: DynamoDB stream records (Lambda's
    shape) unless another format is given (a backfill's snapshot items, say)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        policy: RetryPolicy = WRITE_BATCH,
        hydrator: Any = None,
        records: RecordFormat = LAMBDA_RECORDS,
    ) -> None:
        super().__init__(
            engine,
            settings,
            policy,
            hydrator,
            records=records,
            new_hydrator=lambda: _new_hydrator(settings.region),
        )
