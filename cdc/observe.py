"""What the handler tells CloudWatch about each batch.

One structured JSON log line per batch, and CloudWatch metrics in the Embedded Metric
Format: a JSON log line with an `_aws` block that CloudWatch turns into metrics, with
no API call and no agent. Written by hand rather than through Powertools' Metrics,
which imports botocore (measured: ~90 ms more cold start) for what is a dozen lines of
JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from cdc.apply import BatchResult

METRICS = (
    ("RecordsApplied", "Count"),
    ("RecordsStale", "Count"),
    ("RecordsDeadLettered", "Count"),
    ("RecordsFailed", "Count"),
    ("ReplicationLag", "Seconds"),
    ("BatchDuration", "Milliseconds"),
)


def log_line(result: BatchResult) -> dict[str, Any]:
    """The batch's structured log record."""
    return {
        "level": "INFO" if not result.failed else "ERROR",
        "message": "batch applied" if not result.failed else "batch partly reported for redelivery",
        **result.summary(),
        "by_table": [
            {"stream": stream, "table": table, **vars(stats)}
            for (stream, table), stats in sorted(result.by_table.items())
        ],
    }


def emf_documents(
    result: BatchResult, namespace: str, now_ms: int | None = None
) -> Iterator[dict[str, Any]]:
    """One EMF document per (stream, table) of the batch."""
    timestamp = int(time.time() * 1000) if now_ms is None else now_ms
    for (stream, table), stats in sorted(result.by_table.items()):
        values: dict[str, float] = {
            "RecordsApplied": stats.applied,
            "RecordsStale": stats.stale,
            "RecordsDeadLettered": stats.dead_lettered,
            "RecordsFailed": stats.failed,
            "BatchDuration": round(result.seconds * 1000, 3),
        }
        if stats.max_lag_s is not None:
            values["ReplicationLag"] = round(stats.max_lag_s, 3)
        yield {
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [["Stream", "Table"]],
                        "Metrics": [{"Name": n, "Unit": u} for n, u in METRICS if n in values],
                    }
                ],
            },
            "Stream": _stream_label(stream) or "unknown",
            "Table": table or "unknown",
            **values,
        }


def _stream_label(arn: str) -> str:
    """`table/Orders/stream/2024-…` of a stream ARN: short enough for a dimension and
    still unique per stream (a table's streams differ by their label)."""
    return arn.split(":", 5)[-1] if arn.count(":") >= 5 else arn


def emit(
    result: BatchResult, environ: Mapping[str, str] | None = None, out: TextIO | None = None
) -> None:
    """Print the log line and, unless CDC_METRICS=off, the EMF documents (Lambda sends
    stdout to CloudWatch Logs, which extracts the metrics)."""
    env = os.environ if environ is None else environ
    stream = out or sys.stdout
    lines = [log_line(result)]
    if env.get("CDC_METRICS", "emf").lower() != "off":
        lines.extend(emf_documents(result, env.get("CDC_METRICS_NAMESPACE", "cdc")))
    stream.write("".join(json.dumps(line, default=str) + "\n" for line in lines))
    stream.flush()
