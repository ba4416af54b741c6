"""`cdc redrive-failures QUEUE_URL | s3://BUCKET[/PREFIX]`: re-apply batches Lambda gave
up on.

When an event source mapping runs out of retries (MaximumRetryAttempts,
MaximumRecordAgeInSeconds), it sends an "invocation record" to its on-failure
destination and moves on. In an S3 destination the object holds the records themselves
(its `payload`): cdc/app/commands/redrive_s3.py applies them, however late. An SQS or
SNS message does not hold the stream records, only where they are
(`DDBStreamBatchInfo`):

    {"requestContext": {"condition": "RetryAttemptsExhausted", ...},
     "DDBStreamBatchInfo": {"shardId": "shardId-...", "startSequenceNumber": "8000...62",
       "endSequenceNumber": "8000...62", "batchSize": 1, "streamArn": "arn:aws:dynamodb:...",
       "approximateArrivalOfFirstRecord": "...", "approximateArrivalOfLastRecord": "..."}}

so the records must be read back from the stream while it still retains them (24 hours).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cdc.config import Settings
from cdc.core.errors import ConfigError
from cdc.sources.dynamodb_streams.on_failure import batch_info

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from cdc.aws.clients import Clients
    from cdc.jobs.replicate import Replicator

NAME = "redrive-failures"
HELP = "apply the batches in a Lambda on-failure destination (SQS queue or S3 bucket)"
DESCRIPTION = (
    "Apply the batches the event source mapping gave up on. s3://BUCKET[/PREFIX]: each "
    "object's records (its payload) are applied as the Lambda handler applies a batch, "
    "and the object is deleted (--keep: moved under --done-prefix) once they are "
    "committed; objects that are not invocation records are reported and left in place. "
    "QUEUE_URL: the records of each SQS message's shard and sequence range are read back "
    "from the stream (AT_SEQUENCE_NUMBER) and applied, and the message deleted once they "
    "are committed; messages whose records the stream no longer retains (older than 24 "
    "hours) are reported and kept: run `cdc backfill` and `cdc verify` to repair what they "
    "lost. Exits 1 if any message or object was kept."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "destination",
        metavar="QUEUE_URL|s3://BUCKET[/PREFIX]",
        help="the on-failure SQS queue URL, or the S3 bucket (and key prefix) of the "
        "on-failure destination",
    )
    parser.add_argument(
        "--max-messages",
        type=int,
        metavar="N",
        help="stop after N messages or objects (default: all)",
    )
    parser.add_argument(
        "--wait-seconds",
        type=int,
        default=1,
        choices=range(21),
        metavar="S",
        help="SQS long-poll wait per receive, 0-20 (default 1)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=300,
        metavar="S",
        help="hide a received message this long (default 300): a kept message comes back "
        "for the next run, not this one",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="S3: move each redriven object under --done-prefix instead of deleting it",
    )
    parser.add_argument(
        "--done-prefix",
        default="done/",
        metavar="P",
        help="S3: where --keep moves redriven objects, in the same bucket; never read "
        "from (default done/)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would be redriven; change nothing"
    )
    parser.add_argument("--region", help="AWS region (default: from the queue URL)")


@dataclass
class Outcome:
    """What became of one message (or S3 object): `name` is its id (or key)."""

    name: str
    redriven: bool
    reason: str = ""
    records: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


def run(settings: Settings, args: argparse.Namespace, *, clients: Clients | None = None) -> int:
    from cdc.app.engines import engine_for
    from cdc.aws import clients as aws
    from cdc.aws import errors as aws_errors
    from cdc.jobs.replicate import Replicator

    clients = clients or aws.Clients(args.region or settings.region)
    if args.destination.startswith("s3://"):
        from cdc.app.commands.redrive_s3 import run_s3

        return run_s3(settings, args, clients)
    if args.keep:
        raise ConfigError("--keep applies to an s3:// destination (SQS messages are deleted)")
    sqs = clients.sqs(args.region or _queue_region(args.destination))
    engine = engine_for(settings)
    replicator = Replicator(engine, settings)
    outcomes: list[Outcome] = []
    seen: set[str] = set()
    peeked: list[str] = []  # --dry-run: made visible again at the end
    try:
        while args.max_messages is None or len(outcomes) < args.max_messages:
            wanted = 10 if args.max_messages is None else min(10, args.max_messages - len(outcomes))
            try:
                response = aws.call(
                    sqs.receive_message,
                    QueueUrl=args.destination,
                    MaxNumberOfMessages=wanted,
                    WaitTimeSeconds=args.wait_seconds,
                    VisibilityTimeout=args.visibility_timeout,
                    attempts=aws.STARTUP_ATTEMPTS if not seen else 8,
                    quiet=not seen,
                )
            except Exception as exc:
                if aws_errors.error_code(exc) in aws_errors.NOT_FOUND_CODES:
                    raise aws_errors.AwsSetupError(
                        f"SQS queue {args.destination} does not exist: check the queue URL "
                        "(the event source mapping's on-failure destination) and --region"
                    ) from None
                raise
            messages = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                outcome = redrive_message(message, replicator, clients, dry_run=args.dry_run)
                if args.dry_run:
                    peeked.append(message["ReceiptHandle"])
                elif outcome.redriven:
                    aws.call(
                        sqs.delete_message,
                        QueueUrl=args.destination,
                        ReceiptHandle=message["ReceiptHandle"],
                    )
                outcomes.append(outcome)
                print(_line(outcome, args.dry_run))
    finally:
        for handle in peeked:  # leave them as they were, for the next reader
            aws.call(
                sqs.change_message_visibility,
                QueueUrl=args.destination,
                ReceiptHandle=handle,
                VisibilityTimeout=0,
            )
        engine.dispose()
    return report(outcomes, "messages", settings, dry_run=args.dry_run)


def report(outcomes: list[Outcome], noun: str, settings: Settings, *, dry_run: bool) -> int:
    """The closing summary; the exit code: 1 if anything was kept."""
    kept = [o for o in outcomes if not o.redriven]
    verb = "would redrive" if dry_run else "redrove"
    print(
        f"{verb} {len(outcomes) - len(kept)} of {len(outcomes)} {noun} "
        f"({sum(o.records for o in outcomes if o.redriven)} records); {len(kept)} kept"
    )
    print(f"database: {settings.masked_url()}", file=sys.stderr)
    return 1 if kept else 0


def redrive_message(
    message: MessageTypeDef, replicator: Replicator, clients: Clients, *, dry_run: bool = False
) -> Outcome:
    """Read one failed batch back from the stream and apply it. `redriven` is True only
    when every record was committed (applied, found stale, or dead-lettered)."""
    outcome = Outcome(message["MessageId"], redriven=False)
    try:
        info = batch_info(message.get("Body", ""))
    except ValueError as exc:
        outcome.reason = str(exc)
        return outcome
    records, outcome.reason = reread(info, clients)
    if records is None:
        return outcome
    where = f"{info['shardId']} {info['startSequenceNumber']}..{info['endSequenceNumber']}: "
    empty = "no records found in that range"
    return apply_batch(outcome, records, replicator, dry_run=dry_run, where=where, empty=empty)


def apply_batch(
    outcome: Outcome,
    records: list[Any],
    replicator: Replicator,
    *,
    dry_run: bool,
    where: str = "",
    empty: str,
) -> Outcome:
    """Apply a failed batch's records as the handler would; `redriven` only when every
    one was committed (applied, found stale, or dead-lettered)."""
    outcome.records = len(records)
    if not records:
        outcome.reason = where + empty
        return outcome
    if dry_run:
        outcome.redriven = True
        return outcome
    # shard_id "": these are the Lambda mapping's records, and its checkpoint row; a
    # `cdc tail` checkpoint for the shard must not jump ahead because of a redrive.
    result = replicator.process(records)
    outcome.summary = result.summary()
    if result.failed:
        outcome.reason = f"{where}{result.failed} records not committed ({result.error})"
        return outcome
    outcome.redriven = True
    return outcome


def reread(info: dict[str, Any], clients: Clients) -> tuple[list[Any] | None, str]:
    """The records of a `DDBStreamBatchInfo` range, read back from the stream; or None
    and why they cannot be."""
    from cdc.aws import clients as aws
    from cdc.sources.dynamodb_streams.reader import (
        RecordsTrimmed,
        ShardNotFound,
        StreamError,
        StreamReader,
    )

    arn, shard = info["streamArn"], info["shardId"]
    first, last = info["startSequenceNumber"], info["endSequenceNumber"]
    where = f"{shard} {first}..{last}"
    from cdc.sources.kinesis.reader import KinesisReader

    reader: StreamReader
    if arn.split(":")[2:3] == ["kinesis"]:  # Kinesis Data Streams for DynamoDB
        reader = KinesisReader(clients.kinesis(aws.region_of(arn)), arn)
    else:
        reader = StreamReader(clients.streams(aws.region_of(arn)), arn)
    try:
        return reader.read_range(shard, first, last), ""
    except RecordsTrimmed:
        retention = "retention" if isinstance(reader, KinesisReader) else "24-hour retention"
        return None, (
            f"{where}: the records are past the stream's {retention} and lost; "
            "repair with `cdc backfill` and `cdc verify`"
        )
    except ShardNotFound:
        return None, f"{where}: the stream or shard no longer exists (disabled, or expired)"
    except StreamError as exc:
        return None, f"{where}: {exc}"


def _line(outcome: Outcome, dry_run: bool) -> str:
    if not outcome.redriven:
        return f"kept {outcome.name}: {outcome.reason}"
    if dry_run:
        return f"would redrive {outcome.name}: {outcome.records} records"
    s = outcome.summary
    return (
        f"redrove {outcome.name}: {outcome.records} records: {s['applied']} applied, "
        f"{s['stale']} stale, {s['dead_lettered']} dead-lettered; message deleted"
    )


def _queue_region(url: str) -> str | None:
    """`https://sqs.eu-west-1.amazonaws.com/123456789012/name` → eu-west-1."""
    host = urlparse(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 3 and parts[0] == "sqs":
        return parts[1]
    return None
