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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cdc.core.errors import ConfigError
from cdc.sources.dynamodb_streams.on_failure import failed_batch

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from cdc.app.commands.redrive_failures import Outcome
    from cdc.aws.clients import Clients
    from cdc.config import Settings
    from cdc.jobs.replicate import Replicator


def parse_location(text: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` → ("bucket", "some/prefix")."""
    bucket, _, prefix = text.removeprefix("s3://").partition("/")
    if not bucket:
        raise ConfigError(f"{text!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    return bucket, prefix


def run_s3(settings: Settings, args: argparse.Namespace, clients: Clients) -> int:
    from cdc.app.commands.redrive_failures import report
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
    outcomes: list[Outcome] = []
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
    return report(outcomes, "objects", settings, dry_run=args.dry_run)


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
) -> Outcome:
    """Apply one object's batch. `redriven` is True only when every record was committed
    (applied, found stale, or dead-lettered)."""
    from cdc.app.commands.redrive_failures import Outcome, apply_batch, reread
    from cdc.aws import clients as aws
    from cdc.aws import errors as aws_errors

    outcome = Outcome(key, redriven=False)
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
    return apply_batch(
        outcome,
        records,
        replicator,
        dry_run=dry_run,
        empty="the invocation record holds no records; left in place",
    )


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


def _line(outcome: Outcome, bucket: str, done: str | None, dry_run: bool) -> str:
    where = f"s3://{bucket}/{outcome.name}"
    if not outcome.redriven:
        return f"kept {where}: {outcome.reason}"
    if dry_run:
        return f"would redrive {where}: {outcome.records} records"
    s = outcome.summary
    then = f"moved to s3://{bucket}/{done}{outcome.name}" if done else "object deleted"
    return (
        f"redrove {where}: {outcome.records} records: {s['applied']} applied, "
        f"{s['stale']} stale, {s['dead_lettered']} dead-lettered; {then}"
    )
