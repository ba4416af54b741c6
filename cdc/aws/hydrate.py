"""Hydration for KEYS_ONLY and OLD_IMAGE streams: INSERT and MODIFY records carry no
NewImage, so the item is read back from the table with a consistent `BatchGetItem`.

The item read is the table's *current* state, which may be newer than the record; the
records that follow in the stream carry the later changes, and the sequence guard keeps
the replica converging either way. An item gone by the time it is read was deleted
since: its REMOVE follows in the stream, so the record is left to it (counted stale).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from cdc.aws.clients import Clients, region_of
from cdc.aws.reads import UnprocessedKeys, batch_get
from cdc.aws.wire import image_from_wire, image_to_wire
from cdc.core.change import Change
from cdc.core.deadline import Deadline
from cdc.core.errors import CdcError
from cdc.core.jsontext import dumps

log = logging.getLogger("cdc.hydrate")

WRITE_RESERVE_S = 3.0  # of the Lambda deadline, kept for writing the batch after hydrating


class HydrationError(CdcError):
    """DynamoDB could not be read (throttled, unreachable): the records are reported for
    redelivery, never dead-lettered."""


class Hydrator:
    def __init__(
        self,
        clients: Clients | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients or Clients()
        self.sleep = sleep

    def items_for(
        self, changes: Sequence[Change], deadline: Deadline | None = None
    ) -> dict[int, dict[str, Any] | None]:
        """The current item (wire form) for each change's key, by change index; None
        where the item no longer exists. Raises HydrationError when DynamoDB cannot be
        read in time (leaving `WRITE_RESERVE_S` of the deadline for the database)."""
        sleep = self._sleep_within(deadline or Deadline())
        by_table: dict[tuple[str, str | None], list[Change]] = {}
        for change in changes:
            by_table.setdefault((change.source_table, region_of(change.stream_arn)), []).append(
                change
            )
        found: dict[int, dict[str, Any] | None] = {}
        for (table, region), group in by_table.items():
            unique: dict[str, dict[str, Any]] = {}
            for change in group:
                unique.setdefault(_key_id(change.keys), change.keys)
            items = self._batch_get(table, region, list(unique.values()), sleep)
            for change in group:
                found[change.index] = items.get(_key_id(change.keys))
        return found

    def _sleep_within(self, deadline: Deadline) -> Callable[[float], None]:
        """A sleep that refuses to overrun the invocation: better to report the records
        for redelivery than to time out, which fails the whole batch."""

        def sleep(seconds: float) -> None:
            remaining = deadline.remaining()
            if remaining is not None and remaining - seconds < WRITE_RESERVE_S:
                raise HydrationError("out of time waiting for DynamoDB to hydrate items")
            self.sleep(seconds)

        return sleep

    def _batch_get(
        self,
        table: str,
        region: str | None,
        keys: list[dict[str, Any]],
        sleep: Callable[[float], None],
    ) -> dict[str, dict[str, Any]]:
        key_names = set(keys[0]) if keys else set()
        try:
            found = batch_get(
                self.clients.dynamodb(region),
                table,
                [image_from_wire(k) for k in keys],
                sleep=sleep,
            )
        except (HydrationError, UnprocessedKeys) as exc:
            raise HydrationError(str(exc)) from exc
        except Exception as exc:
            raise HydrationError(f"cannot read {table!r} from DynamoDB to hydrate: {exc}") from exc
        items: dict[str, dict[str, Any]] = {}
        for item in found:
            wire = image_to_wire(item)
            items[_key_id({k: wire[k] for k in key_names if k in wire})] = wire
        return items


def _key_id(keys: dict[str, Any]) -> str:
    return dumps(dict(sorted(keys.items())))
