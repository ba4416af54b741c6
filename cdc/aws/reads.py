"""Reading a DynamoDB table: one Scan pager and one bounded BatchGetItem, shared by
backfill, verify and hydration (each call retried by `clients.call`)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdc.aws.clients import call
from cdc.aws.scans import RateLimiter
from cdc.core.errors import CdcError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_GET_LIMIT = 100  # keys per BatchGetItem request (DynamoDB's limit)
UNPROCESSED_ATTEMPTS = 8  # BatchGetItem calls that may leave keys unprocessed, per chunk


class UnprocessedKeys(CdcError):
    """DynamoDB kept leaving keys unprocessed (throttled) after UNPROCESSED_ATTEMPTS."""


@dataclass(frozen=True)
class Page:
    items: Sequence[dict[str, Any]]
    last_key: dict[str, Any] | None  # LastEvaluatedKey: None on a segment's last page


def scan_pages(
    client: DynamoDBClient,
    table: str,
    *,
    segment: tuple[int, int] | None = None,  # (Segment, TotalSegments)
    start_key: Mapping[str, Any] | None = None,  # ExclusiveStartKey, client form
    consistent: bool = False,
    limit: int | None = None,  # Scan's Limit
    limiter: RateLimiter | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Page]:
    """A (segment of a) table's pages, in order, paced by `limiter` (each page reserves
    `limit` items before it is read and gives back what it did not bring). Ends after
    the last page, or before the next one once `stop` is set."""
    last_key = dict(start_key) if start_key is not None else None
    while stop is None or not stop.is_set():
        if limiter is not None and limit is not None and not limiter.acquire(limit, stop):
            return
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": consistent}
        if segment is not None:
            kwargs["Segment"], kwargs["TotalSegments"] = segment
        if last_key is not None:
            kwargs["ExclusiveStartKey"] = last_key
        if limit is not None:
            kwargs["Limit"] = limit
        response = call(client.scan, **kwargs)
        items: Sequence[dict[str, Any]] = response.get("Items", [])
        if limiter is not None and limit is not None:
            limiter.refund(limit - len(items))
        last_key = response.get("LastEvaluatedKey")
        yield Page(items, last_key)
        if last_key is None:
            return


def batch_get(
    client: DynamoDBClient,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """The items of `keys` (client form) that exist, strongly consistent: BatchGetItem
    100 keys a call, unprocessed keys asked again with jittered backoff, at most
    UNPROCESSED_ATTEMPTS times per chunk, then UnprocessedKeys."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        pending = [dict(k) for k in keys[start : start + BATCH_GET_LIMIT]]
        for attempt in range(UNPROCESSED_ATTEMPTS):
            if limiter is not None:
                limiter.acquire(len(pending))
            response = call(
                client.batch_get_item,
                sleep=sleep,
                RequestItems={table: {"Keys": pending, "ConsistentRead": True}},
            )
            items = response.get("Responses", {}).get(table, [])
            if limiter is not None:
                limiter.refund(len(pending) - len(items))
            found.extend(items)
            unprocessed = response.get("UnprocessedKeys", {}).get(table)
            pending = list(unprocessed["Keys"]) if unprocessed else []
            if not pending:
                break
            if attempt == UNPROCESSED_ATTEMPTS - 1:
                raise UnprocessedKeys(
                    f"DynamoDB left {len(pending)} keys of {table!r} unprocessed after "
                    f"{UNPROCESSED_ATTEMPTS} attempts (throttled): retry later or raise the "
                    "table's read capacity"
                )
            # DynamoDB returns unprocessed keys when throttled: back off, then ask again.
            sleep(min(5.0, 0.05 * 2**attempt) * random.uniform(0.5, 1))  # noqa: S311
    return found
