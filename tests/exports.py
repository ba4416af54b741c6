"""DynamoDB exports written into (moto's) S3 in the documented layout, since moto's own
ExportTableToPointInTime writes one data file and no manifests.

The layout follows the AWS developer guide, "DynamoDB table export output format":
`PREFIX/AWSDynamoDB/EXPORT_ID/` holds `_started`, `manifest-summary.json` (version
2020-06-30, exportArn, startTime, endTime, tableArn, tableId, exportTime, s3Bucket,
s3Prefix, s3SseAlgorithm, s3SseKmsKeyId, manifestFilesS3Key, billedSizeBytes, itemCount,
outputFormat, exportType), `manifest-files.json` (JSON Lines: itemCount, md5Checksum
(base64), etag, dataFileS3Key) and `data/<random>.json.gz` (gzip JSON Lines, one
`{"Item": {...}}` each; an empty partition's file is empty).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import uuid
from typing import Any

EXPORT_TIME = "2026-11-26T10:00:00.000Z"


def wire_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item as boto3 takes it (bytes) in the export's DynamoDB JSON (base64)."""
    from cdc.aws.wire import image_to_wire

    return image_to_wire(item)


def gz_lines(lines: list[dict[str, Any]] | list[str]) -> bytes:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    return gzip.compress(text.encode())


def ion_text(av: dict[str, Any]) -> str:
    """An AttributeValue in Amazon Ion text, as an ION export writes it: sets are
    lists annotated $dynamodb_SS / NS / BS, numbers decimals, binary blobs."""
    ((tag, value),) = av.items()
    if tag == "S":
        return json.dumps(value)
    if tag == "N":
        return value if "." in value or "e" in value.lower() else f"{value}."
    if tag == "B":
        return "{{" + value + "}}"
    if tag in ("SS", "NS", "BS"):
        inner = [ion_text({tag[0]: v}) for v in value]
        return f"$dynamodb_{tag}::[" + ",".join(inner) + "]"
    if tag == "BOOL":
        return "true" if value else "false"
    if tag == "NULL":
        return "null"
    if tag == "L":
        return "[" + ",".join(ion_text(v) for v in value) + "]"
    return ion_struct(value)


def ion_struct(image: dict[str, Any]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{ion_text(v)}" for k, v in image.items()) + "}"


def ion_item_line(item: dict[str, Any]) -> str:
    return "$ion_1_0 {Item:" + ion_struct(item) + "}"


def write_export(
    s3: Any,
    bucket: str,
    table_arn: str,
    files: list[list[dict[str, Any]]],
    *,
    prefix: str = "exports",
    export_id: str | None = None,
    export_type: str = "FULL_EXPORT",
    output_format: str = "DYNAMODB_JSON",
    finished: bool = True,
    lines: list[list[dict[str, Any]]] | list[list[str]] | None = None,
    bodies: dict[int, bytes] | None = None,
    md5s: dict[int, str] | None = None,
) -> str:
    """An export of `files` (each a list of items in DynamoDB JSON, or with `lines`
    the raw lines) under s3://bucket/prefix; its folder URL. `bodies` replaces a data
    file's bytes after its checksum was computed (a corrupt file), `md5s` its MD5."""
    export_id = export_id or f"01764151200000-{uuid.uuid4().hex[:8]}"
    folder = f"{prefix}/AWSDynamoDB/{export_id}" if prefix else f"AWSDynamoDB/{export_id}"
    try:
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name}
        )
    except Exception as exc:
        if "BucketAlready" not in type(exc).__name__ and "BucketAlready" not in str(exc):
            raise
    s3.put_object(Bucket=bucket, Key=f"{folder}/_started", Body=b"")
    rows = lines if lines is not None else [[{"Item": item} for item in f] for f in files]
    entries = []
    for n, file_lines in enumerate(rows):
        body = gz_lines(file_lines) if file_lines else b""
        key = f"{folder}/data/{uuid.uuid4().hex}.json.gz"
        md5 = hashlib.md5(body).digest()
        entries.append(
            {
                "itemCount": len(file_lines),
                "md5Checksum": (md5s or {}).get(n, base64.b64encode(md5).decode()),
                "etag": md5.hex(),
                "dataFileS3Key": key,
            }
        )
        s3.put_object(Bucket=bucket, Key=key, Body=(bodies or {}).get(n, body))
    if not finished:
        return f"s3://{bucket}/{folder}"
    manifest_key = f"{folder}/manifest-files.json"
    manifest = "".join(json.dumps(e) + "\n" for e in entries).encode()
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=manifest)
    summary = {
        "version": "2020-06-30",
        "exportArn": f"{table_arn}/export/{export_id}",
        "startTime": EXPORT_TIME,
        "endTime": "2026-11-26T10:05:00.000Z",
        "tableArn": table_arn,
        "tableId": str(uuid.uuid4()),
        "exportTime": EXPORT_TIME,
        "s3Bucket": bucket,
        "s3Prefix": prefix or None,
        "s3SseAlgorithm": "AES256",
        "s3SseKmsKeyId": None,
        "manifestFilesS3Key": manifest_key,
        "billedSizeBytes": sum(len(json.dumps(f)) for f in rows),
        "itemCount": sum(e["itemCount"] for e in entries),
        "outputFormat": output_format,
        "exportType": export_type,
    }
    s3.put_object(
        Bucket=bucket, Key=f"{folder}/manifest-summary.json", Body=json.dumps(summary).encode()
    )
    return f"s3://{bucket}/{folder}"
