"""DynamoDB exports to S3: where an export lies, its manifests, its data files, and
asking DynamoDB for a new one (README: `cdc backfill`, "From an export").

The layout is AWS's ("DynamoDB table export output format"): under
`s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID/` DynamoDB writes `_started` when the export
begins, `data/*.json.gz` as it goes, and at the end `manifest-summary.json` (the export:
table, time, format, item count, the key of the file manifest) and `manifest-files.json`
(JSON Lines, one per data file: `itemCount`, `md5Checksum`, `etag`, `dataFileS3Key`).
The summary is written last, so an export without one is not finished.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from cdc.aws.clients import Arn, call
from cdc.aws.errors import error_code
from cdc.core.errors import CdcError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

FORMATS = ("DYNAMODB_JSON", "ION")  # ION needs amazon.ion: pip install 'cdc[ion]'
FULL, INCREMENTAL = "FULL_EXPORT", "INCREMENTAL_EXPORT"


class ExportError(CdcError):
    """An export cannot be loaded as it is; the message says why and what to do."""


@dataclass(frozen=True)
class ExportLocation:
    bucket: str
    folder: str  # PREFIX/AWSDynamoDB/EXPORT_ID, no slash at either end

    @classmethod
    def parse(cls, url: str) -> ExportLocation:
        """`s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`, with a trailing slash or not."""
        if not url.startswith("s3://"):
            raise ExportError(f"{url!r} is not an s3:// URL of an export folder")
        bucket, _, path = url[len("s3://") :].partition("/")
        parts = [p for p in path.split("/") if p]
        if not bucket or len(parts) < 2 or parts[-2] != "AWSDynamoDB":
            raise ExportError(
                f"{url!r} is not an export folder: expected s3://BUCKET/PREFIX/AWSDynamoDB/"
                "EXPORT_ID (the folder holding manifest-summary.json)"
            )
        return cls(bucket, "/".join(parts))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.folder}"

    @property
    def export_id(self) -> str:
        return self.folder.rsplit("/", 1)[-1]

    def key(self, name: str) -> str:
        return f"{self.folder}/{name}"


@dataclass(frozen=True)
class ExportSummary:
    """manifest-summary.json, the fields cdc uses."""

    export_arn: str
    table_arn: str
    export_time: datetime
    item_count: int
    output_format: str
    export_type: str  # FULL_EXPORT | INCREMENTAL_EXPORT
    manifest_files_key: str

    @property
    def table_name(self) -> str:
        parsed = Arn.parse(self.table_arn)
        return parsed.resource.split("/")[1] if parsed and "/" in parsed.resource else ""

    @classmethod
    def parse(cls, text: bytes, where: str) -> ExportSummary:
        try:
            data = json.loads(text)
            return cls(
                export_arn=str(data["exportArn"]),
                table_arn=str(data["tableArn"]),
                export_time=_timestamp(data["exportTime"]),
                item_count=int(data["itemCount"]),
                output_format=str(data.get("outputFormat", "DYNAMODB_JSON")),
                export_type=str(data.get("exportType", FULL)),
                manifest_files_key=str(data["manifestFilesS3Key"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportError(f"{where} is not an export summary ({_what(exc)})") from None


@dataclass(frozen=True)
class DataFile:
    """One line of manifest-files.json: a gzip JSON Lines file of the export."""

    number: int  # its line in manifest-files.json, from 0: the file's id in bookkeeping
    key: str
    item_count: int
    md5: str  # base64, as the manifest gives it


def read_summary(s3: S3Client, location: ExportLocation) -> ExportSummary:
    key = location.key("manifest-summary.json")
    try:
        body = _get(s3, location.bucket, key)
    except ExportError:
        raise
    except Exception as exc:
        if error_code(exc) not in ("NoSuchKey", "404"):
            raise
        started = _exists(s3, location.bucket, location.key("_started"))
        raise ExportError(
            f"{location.url} is not finished: it has no manifest-summary.json yet "
            "(DynamoDB writes it last); wait for the export to complete "
            "(aws dynamodb describe-export) and run again"
            if started
            else f"no export at {location.url}: no manifest-summary.json or _started there; "
            "check the bucket, prefix and export id"
        ) from None
    return ExportSummary.parse(body, f"s3://{location.bucket}/{key}")


def read_data_files(
    s3: S3Client, location: ExportLocation, summary: ExportSummary
) -> list[DataFile]:
    """manifest-files.json, checked: every file in the export's folder, and the item
    counts adding up to the summary's."""
    where = f"s3://{location.bucket}/{summary.manifest_files_key}"
    if not summary.manifest_files_key.startswith(location.folder + "/"):
        raise ExportError(f"the summary's manifestFilesS3Key {where} is outside {location.url}")
    text = _get(s3, location.bucket, summary.manifest_files_key)
    files: list[DataFile] = []
    for number, line in enumerate(x for x in text.splitlines() if x.strip()):
        try:
            data = json.loads(line)
            file = DataFile(
                number, str(data["dataFileS3Key"]), int(data["itemCount"]), str(data["md5Checksum"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportError(
                f"{where} line {number + 1}: not a data file entry ({_what(exc)})"
            ) from None
        if not file.key.startswith(location.folder + "/data/"):
            raise ExportError(f"{where} line {number + 1}: {file.key} is outside {location.url}")
        files.append(file)
    total = sum(f.item_count for f in files)
    if total != summary.item_count:
        raise ExportError(
            f"{where} lists {total} items in {len(files)} files, the summary says "
            f"{summary.item_count}: the manifests do not match; export again"
        )
    return files


def check_export(summary: ExportSummary, table: str, location: ExportLocation) -> None:
    """An export of `table` (a name or ARN), in a format cdc reads."""
    same = summary.table_arn == table if table.startswith("arn:") else summary.table_name == table
    if not same:
        raise ExportError(f"{location.url} is an export of {summary.table_arn}, not of {table!r}")
    if summary.output_format not in FORMATS:
        raise ExportError(
            f"{location.url} is in {summary.output_format} format; cdc loads "
            f"{', '.join(FORMATS)}: export again with --export-format DYNAMODB_JSON"
        )
    if summary.export_type not in (FULL, INCREMENTAL):
        raise ExportError(f"{location.url}: unknown exportType {summary.export_type!r}")


def download(
    s3: S3Client,
    bucket: str,
    file: DataFile,
    into: IO[bytes],
    progress: Callable[[], None] | None = None,
) -> None:
    """The data file into `into`, its MD5 checked against the manifest before anything
    of it is read: a file damaged in S3 or replaced stops the load before it writes.
    `progress` is called after each MiB (a worker renews its lease there)."""
    response = call(s3.get_object, Bucket=bucket, Key=file.key)
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in response["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
        into.write(chunk)
        if progress is not None:
            progress()
    into.flush()
    into.seek(0)
    if not _same_md5(digest.digest(), file.md5):
        got = base64.b64encode(digest.digest()).decode("ascii")
        raise ExportError(
            f"s3://{bucket}/{file.key}: MD5 {got} differs from the manifest's {file.md5}: "
            "the file is damaged or not this export's; nothing of it was written"
        )


# --- asking DynamoDB for an export ----------------------------------------------------------


def request_export(client: DynamoDBClient, table_arn: str, bucket: str, prefix: str | None) -> str:
    """ExportTableToPointInTime now; the export's ARN. Needs point-in-time recovery."""
    kwargs: dict[str, Any] = {
        "TableArn": table_arn,
        "S3Bucket": bucket,
        "ExportFormat": "DYNAMODB_JSON",
    }
    if prefix:
        kwargs["S3Prefix"] = prefix
    try:
        response = call(client.export_table_to_point_in_time, **kwargs)
    except Exception as exc:
        if error_code(exc) == "PointInTimeRecoveryUnavailableException":
            name = table_arn.rsplit("/", 1)[-1]
            raise ExportError(
                f"point-in-time recovery is off for table {name}, and DynamoDB exports "
                "need it: turn it on with `aws dynamodb update-continuous-backups "
                f"--table-name {name} --point-in-time-recovery-specification "
                "PointInTimeRecoveryEnabled=true` (or use `cdc backfill` without "
                "--export-to, which scans)"
            ) from None
        raise
    return str(response["ExportDescription"]["ExportArn"])


def wait_for_export(
    client: DynamoDBClient,
    export_arn: str,
    *,
    interval: float = 15.0,
    report: Callable[[str, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ExportLocation:
    """Poll DescribeExport until the export completes; where it is."""
    started = time.monotonic()
    while True:
        described = call(client.describe_export, ExportArn=export_arn)["ExportDescription"]
        status = described.get("ExportStatus", "IN_PROGRESS")
        if report is not None:
            report(status, time.monotonic() - started)
        if status == "COMPLETED":
            return export_location(described)
        if status == "FAILED":
            raise ExportError(
                f"export {export_arn} failed: {described.get('FailureCode', '?')}: "
                f"{described.get('FailureMessage', '')}"
            )
        sleep(interval)


def export_location(described: Any) -> ExportLocation:
    """Where a described export lies: the folder of its ExportManifest, else
    PREFIX/AWSDynamoDB/<the export ARN's last part> (the export id)."""
    bucket = str(described["S3Bucket"])
    manifest = described.get("ExportManifest")
    if manifest:
        return ExportLocation(bucket, str(manifest).rsplit("/", 1)[0].strip("/"))
    prefix = str(described.get("S3Prefix") or "").strip("/")
    export_id = str(described["ExportArn"]).rsplit("/", 1)[-1]
    folder = f"{prefix}/AWSDynamoDB/{export_id}" if prefix else f"AWSDynamoDB/{export_id}"
    return ExportLocation(bucket, folder)


# --- helpers ---------------------------------------------------------------------------------


def _get(s3: S3Client, bucket: str, key: str) -> bytes:
    body: bytes = call(s3.get_object, Bucket=bucket, Key=key)["Body"].read()
    return body


def _exists(s3: S3Client, bucket: str, key: str) -> bool:
    try:
        call(s3.head_object, Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
            return False
        raise
    return True


def _same_md5(digest: bytes, expected: str) -> bool:
    """The manifest gives MD5 in base64; hex is accepted too."""
    if len(expected) == 32:
        try:
            return bytes.fromhex(expected) == digest
        except ValueError:
            pass
    try:
        return base64.b64decode(expected, validate=True) == digest
    except (binascii.Error, ValueError):
        return False


def _timestamp(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _what(exc: BaseException) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
