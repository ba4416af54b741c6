"""What the handler tells CloudWatch about each batch.

One structured JSON log line per batch, and CloudWatch metrics in the Embedded Metric
Format: a JSON log line with an `_aws` block that CloudWatch turns into metrics, with
no API call and no agent. Written by hand rather than through Powertools' Metrics,
which imports botocore (measured: ~90 ms more cold start) for what is a dozen lines of
JSON. The log line uses the keys and formats of Powertools' Logger (`level`,
`location`, `message`, `timestamp`, `service`, `cold_start`, `function_name`,
`function_request_id`, `xray_trace_id`, ...), so the queries and pipelines people
have for Lambda functions' logs work on cdc's too; Powertools itself is not imported,
for the same reason.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from cdc.core.outcomes import BatchResult

if TYPE_CHECKING:
    from cdc.config import Settings

METRICS = (
    ("RecordsApplied", "Count"),
    ("RecordsStale", "Count"),
    ("RecordsDeadLettered", "Count"),
    ("RecordsFailed", "Count"),
    ("ReplicationLag", "Seconds"),
    ("BatchDuration", "Milliseconds"),
)


@dataclass(frozen=True)
class Invocation:
    """The Lambda invocation a log line belongs to, under Powertools' Logger keys."""

    service: str = "cdc"
    cold_start: bool | None = None
    function_name: str | None = None
    function_memory_size: int | None = None
    function_arn: str | None = None
    function_request_id: str | None = None
    xray_trace_id: str | None = None

    @classmethod
    def from_context(
        cls, context: Any, *, service: str, cold_start: bool, trace_header: str | None
    ) -> Invocation:
        """From Lambda's context object (any attribute may be missing: tests, other
        runtimes) and the `_X_AMZN_TRACE_ID` header of this invocation."""
        return cls(
            service=service,
            cold_start=cold_start,
            function_name=_text(getattr(context, "function_name", None)),
            function_memory_size=_whole(getattr(context, "memory_limit_in_mb", None)),
            function_arn=_text(getattr(context, "invoked_function_arn", None)),
            function_request_id=_text(getattr(context, "aws_request_id", None)),
            xray_trace_id=trace_id(trace_header),
        )

    def fields(self) -> dict[str, Any]:
        """The keys that have a value, in Powertools' order (it leaves out None too)."""
        return {k: v for k, v in vars(self).items() if v is not None}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _whole(value: Any) -> int | None:
    """Lambda's runtimes give the memory size as an int or a decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdecimal():
        return int(value)
    return None


def trace_id(header: str | None) -> str | None:
    """The X-Ray trace id of a `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=…;
    Sampled=1` header (Lambda's `_X_AMZN_TRACE_ID`), as Powertools reports it."""
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "Root" and value:
            return value
    return None


def timestamp(seconds: float) -> str:
    """`2021-05-03 11:47:12,494+0000`: Powertools Logger's default format (milliseconds
    after a comma, then the UTC offset), always in UTC as Lambda's clock is."""
    millis = int(seconds * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(millis // 1000)) + (
        f",{millis % 1000:03d}+0000"
    )


def log_line(
    result: BatchResult,
    invocation: Invocation | None = None,
    *,
    now: float | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """The batch's structured log record: Powertools' keys first, then the batch's
    counts by outcome and table, its duration and replication lag."""
    line: dict[str, Any] = {
        "level": "INFO" if not result.failed else "ERROR",
        **({"location": location} if location else {}),
        "message": "batch applied" if not result.failed else "batch partly reported for redelivery",
        "timestamp": timestamp(time.time() if now is None else now),
        **(invocation or Invocation()).fields(),
    }
    return {
        **line,
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
        directives = [
            {
                "Namespace": namespace,
                "Dimensions": [["Stream", "Table"]],
                "Metrics": [{"Name": n, "Unit": u} for n, u in METRICS if n in values],
            }
        ]
        if stats.open_gaps is not None:
            # The table's open gaps, with every batch: above 0 until `cdc repair` closes
            # them (README: Gaps and repair). Its own directive, with the table as its
            # only dimension: the alarm must not depend on which stream's ARN the
            # template was deployed with (a gap is what a new stream opens).
            values["ReplicationGaps"] = stats.open_gaps
            directives.append(
                {
                    "Namespace": namespace,
                    "Dimensions": [["Table"]],
                    "Metrics": [{"Name": "ReplicationGaps", "Unit": "Count"}],
                }
            )
        yield {
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": directives,
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
    result: BatchResult,
    settings: Settings,
    invocation: Invocation | None = None,
    *,
    out: TextIO | None = None,
    now: float | None = None,
) -> None:
    """Print the log line and, unless CDC_METRICS=off, the EMF documents (Lambda sends
    stdout to CloudWatch Logs, which extracts the metrics). The line's `location` is
    the caller's `function:line`, as Powertools gives the logging call's."""
    caller = sys._getframe(1)
    moment = time.time() if now is None else now
    stream = out or sys.stdout
    lines = [
        log_line(
            result,
            invocation,
            now=moment,
            location=f"{caller.f_code.co_name}:{caller.f_lineno}",
        )
    ]
    if settings.metrics != "off":
        lines.extend(emf_documents(result, settings.metrics_namespace, int(moment * 1000)))
    stream.write("".join(json.dumps(line, default=str) + "\n" for line in lines))
    stream.flush()
