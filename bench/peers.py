"""A peer for the comparison: the usual way to write this Lambda with AWS Lambda
Powertools. Run by bench/run.py as a worker, with the bench venv's Python (it needs
aws-lambda-powertools, which is not a dependency of cdc; bench/README.md):

    bench/.venv/bin/python bench/peers.py DATABASE_URL SCHEMA TABLE

`BatchProcessor(event_type=EventType.DynamoDBStreams)` with `process_partial_response`,
and a record handler that takes Powertools' deserialized NewImage, encodes it with
`json.dumps` (Decimal as int or float, sets as lists, as such code usually does) and
runs one guarded SQLAlchemy upsert (`INSERT … ON CONFLICT (id) DO UPDATE … WHERE
_cdc_seq < excluded._cdc_seq`) in a transaction of its own: a record's failure must not
undo the others, which is what partial batch responses promise.

Protocol: one JSON line out when ready ({"ready": true, "versions": …}); then per line
in (a DynamoDB Streams event), one line out: {"seconds": …, "failures": …}, the seconds
measured around `process_partial_response` alone (the JSON parsing of the handed-over
event happens before the clock starts, as Lambda does it before the handler runs).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii")  # Powertools keeps B as its base64 text
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def main() -> int:
    # Installed in the bench venv only (bench/requirements.txt), not in cdc's.
    import aws_lambda_powertools  # type: ignore[import-not-found,unused-ignore]
    import sqlalchemy
    from aws_lambda_powertools.utilities.batch import (  # type: ignore[import-not-found,unused-ignore]
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (  # type: ignore[import-not-found,unused-ignore]
        DynamoDBRecord,
    )
    from sqlalchemy import MetaData, Table, create_engine
    from sqlalchemy.dialects.postgresql import insert

    url, schema, table_name = sys.argv[1:4]
    engine = create_engine(url)
    table = Table(table_name, MetaData(), autoload_with=engine, schema=schema)
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)

    def record_handler(record: DynamoDBRecord) -> None:
        ddb = record.dynamodb
        assert ddb is not None
        row = {
            "id": ddb.keys["id"],
            "item": _plain(ddb.new_image),
            "_cdc_seq": int(ddb.sequence_number or 0),
            "_cdc_deleted": False,
            "_cdc_event_time": datetime.fromtimestamp(ddb.approximate_creation_date_time or 0, UTC),
            "_cdc_applied_at": datetime.now(UTC),
        }
        stmt = insert(table).values(**row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={c: stmt.excluded[c] for c in row if c != "id"},
            where=table.c._cdc_seq < stmt.excluded._cdc_seq,
        )
        with engine.begin() as conn:
            conn.execute(stmt)

    powertools = getattr(aws_lambda_powertools, "__version__", "?")
    versions = f"aws-lambda-powertools {powertools}, SQLAlchemy {sqlalchemy.__version__}"
    print(json.dumps({"ready": True, "versions": versions}), flush=True)
    for line in sys.stdin:
        event = json.loads(line)
        started = time.perf_counter()
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=None
        )
        seconds = time.perf_counter() - started
        failures = len(response.get("batchItemFailures", []))
        print(json.dumps({"seconds": seconds, "failures": failures}), flush=True)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
