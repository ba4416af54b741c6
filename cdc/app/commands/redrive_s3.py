"""`cdc redrive-failures s3://BUCKET[/PREFIX]`: apply the batches an S3 on-failure
destination holds.

For an S3 destination Lambda writes the whole invocation record, the failed batch's
records included (cdc/sources/dynamodb_streams/on_failure.py has the documented shape),
one object per batch. So, unlike an SQS message, an object can be applied days or weeks
later, long after the stream has trimmed its records: the records go through the same
replicator as a Lambda batch, and the sequence guard decides, as always, whether each is
newer than the replica's row (README, "Apply rules"; docs/architecture.md §3).

An object is deleted (or with `--keep`, copied under `--done-prefix` and then deleted)
only after its records are committed: a crash in between leaves it in place, and the
next run applies it again, which the guard makes a no-op. An object that is not an
invocation record is reported and left where it is, never deleted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdc.core.errors import ConfigError
from cdc.sources.dynamodb_streams.on_failure import failed_batch

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cdc.aws.clients import Clients
    from cdc.config import Settings
    from cdc.jobs.replicate import Replicator


@dataclass
class ObjectOutcome:
    key: str
    redriven: bool
    reason: str = ""
    records: int = 0
    summary: dict[str, Any] = field(default_factory=dict)


def parse_location(text: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix")."""
    bucket, _, prefix = text.removeprefix("s3://").partition("/")
    if not bucket:
        raise ConfigError(f"{text!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    return bucket, prefix


def run_s3(settings: Settings, args: argparse.Namespace, clients: Clients) -> int:
    from cdc.app.engines import engine_for
    from cdc.jobs.replicate import Replicator

    bucket, prefix = parse_location(args.destination)
    done = args.done_prefix.strip("/") + "/"
    if args.keep and done == "/":
        raise ConfigError("--done-prefix must name a prefix (e.g. done/) to move objects to")
    if args.keep and prefix.startswith(done):
        raise ConfigError(f"--done-prefix {done!r} is inside the prefix read, {prefix!r}")
    # Objects already moved are not read again, unless that is the prefix asked for.
    skip = "" if done == "/" or prefix.startswith(done) else done
    s3 = clients.s3(args.region)
    engine = engine_for(settings)
    replicator = Replicator(engine, settings)
    outcomes: list[ObjectOutcome] = []
    try:
        for key in _keys(s3, bucket, prefix, skip=skip):
            if args.max_messages is not None and len(outcomes) >= args.max_messages:
                break
            outcome = redrive_object(s3, bucket, key, replicator, clients, dry_run=args.dry_run)
            if outcome.redriven and not args.dry_run:
                _retire(s3, bucket, key, done if args.keep else None)
            outcomes.append(outcome)
            print(_line(outcome, bucket, done if args.keep else None, args.dry_run))
    finally:
        engine.dispose()
    kept = [o for o in outcomes if not o.redriven]
    verb = "would redrive" if args.dry_run else "redrove"
    print(
        f"{verb} {len(outcomes) - len(kept)} of {len(outcomes)} objects "
        f"({sum(o.records for o in outcomes if o.redriven)} records); {len(kept)} kept"
    )
    print(f"database: {settings.masked_url()}", file=sys.stderr)
    return 1 if kept else 0


def _keys(s3: S3Client, bucket: str, prefix: str, *, skip: str) -> Iterator[str]:
    """The object keys under `prefix`, in key order (Lambda's keys put a mapping's and
    shard's objects in time order), leaving out `skip/` and folder markers."""
    from cdc.aws import clients as aws
    from cdc.aws import errors as aws_errors

    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        try:
            page = aws.call(s3.list_objects_v2, attempts=aws.STARTUP_ATTEMPTS, quiet=True, **kwargs)
        except Exception as exc:
            if aws_errors.error_code(exc) == "NoSuchBucket":
                raise aws_errors.AwsSetupError(
                    f"S3 bucket {bucket} does not exist: check the bucket (the event source "
                    "mapping's on-failure destination) and --region"
                ) from None
            raise
        for entry in page.get("Contents", []):
            key = entry["Key"]
            if (skip and key.startswith(skip)) or key.endswith("/"):
                continue
            yield key
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def redrive_object(
    s3: S3Client,
    bucket: str,
    key: str,
    replicator: Replicator,
    clients: Clients,
    *,
    dry_run: bool = False,
) -> ObjectOutcome:
    """Apply one object's batch. `redriven` is True only when every record was committed
    (applied, found stale, or dead-lettered)."""
    from cdc.app.commands.redrive_failures import reread
    from cdc.aws import clients as aws
    from cdc.aws import errors as aws_errors

    outcome = ObjectOutcome(key, redriven=False)
    try:
        body = aws.call(s3.get_object, Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if aws_errors.error_code(exc) in ("NoSuchKey", "404"):
            outcome.reason = "the object is gone (taken by another run?)"
            return outcome
        raise
    try:
        batch = failed_batch(body)
    except ValueError as exc:
        outcome.reason = f"not an on-failure invocation record: {exc}; left in place"
        return outcome
    records = batch.records
    if records is None:  # no payload: only coordinates, as in an SQS message
        records, outcome.reason = reread(batch.info, clients)
        if records is None:
            return outcome
    outcome.records = len(records)
    if not records:
        outcome.reason = "the invocation record holds no records; left in place"
        return outcome
    if dry_run:
        outcome.redriven = True
        return outcome
    # shard_id "": the Lambda mapping's records and its checkpoint row, as in the handler.
    result = replicator.process(records)
    outcome.summary = result.summary()
    if result.failed:
        outcome.reason = f"{result.failed} records not committed ({result.error})"
        return outcome
    outcome.redriven = True
    return outcome


def _retire(s3: S3Client, bucket: str, key: str, done: str | None) -> None:
    """Delete a committed object; with `done`, copy it there first (a crash between
    the two leaves both: the next run applies the original again, harmlessly)."""
    from cdc.aws import clients as aws
    from cdc.aws import errors as aws_errors

    if done is not None:
        try:
            aws.call(
                s3.copy_object,
                Bucket=bucket,
                Key=done + key,
                CopySource={"Bucket": bucket, "Key": key},
            )
        except Exception as exc:
            if aws_errors.error_code(exc) != "NoSuchKey":
                raise
            return  # another run has moved it meanwhile
    aws.call(s3.delete_object, Bucket=bucket, Key=key)


def _line(outcome: ObjectOutcome, bucket: str, done: str | None, dry_run: bool) -> str:
    where = f"s3://{bucket}/{outcome.key}"
    if not outcome.redriven:
        return f"kept {where}: {outcome.reason}"
    if dry_run:
        return f"would redrive {where}: {outcome.records} records"
    s = outcome.summary
    then = f"moved to s3://{bucket}/{done}{outcome.key}" if done else "object deleted"
    return (
        f"redrove {where}: {outcome.records} records: {s['applied']} applied, "
        f"{s['stale']} stale, {s['dead_lettered']} dead-lettered; {then}"
    )
