"""Which records need their item read back from the source table, and what a failed
read means. An INSERT or MODIFY record of a KEYS_ONLY or OLD_IMAGE stream carries no
NewImage; for a table that enables `hydrate` the item is read by an `ItemReader` (the
I/O: cdc/aws/hydrate.py for DynamoDB, wired in by cdc/jobs/replicate.py), built the
first time a table asks for it. A read that fails reports its records for redelivery,
never dead-letters them: DynamoDB being unavailable is an outage, not a bad record."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from cdc.core.change import Change
from cdc.core.deadline import Deadline
from cdc.core.errors import CdcError
from cdc.core.mapping import TableSpec

log = logging.getLogger("cdc")


class ItemReader(Protocol):
    def items_for(
        self, changes: Sequence[Change], deadline: Deadline | None
    ) -> Mapping[int, dict[str, Any] | None]:
        """The current item of each change's key, by change index; None where the item
        no longer exists. Raises when the source cannot be read in time."""
        ...


class Hydration:
    """Reads back the items of the records that need them: through `reader`, or one
    `new_reader` builds on first need (so that a process whose tables never ask for it
    never imports the AWS SDK)."""

    def __init__(
        self,
        reader: ItemReader | None = None,
        new_reader: Callable[[], ItemReader] | None = None,
    ) -> None:
        self._reader = reader
        self._new_reader = new_reader

    def items(
        self, parsed: Iterable[tuple[Change, TableSpec[Any]]], deadline: Deadline | None
    ) -> dict[int, dict[str, Any] | Exception | None]:
        """Index → the item read, None (gone since: its REMOVE follows in the stream) or
        the error that stopped the read, for each image-less INSERT or MODIFY of a table
        that enables hydration; nothing for any other record."""
        wanted = [
            c
            for c, spec in parsed
            if spec.options.hydrate and not c.is_remove and c.new_image is None
        ]
        if not wanted:
            return {}
        if self._reader is None:
            if self._new_reader is None:
                raise CdcError("a table asks for hydration but this replicator has no hydrator")
            self._reader = self._new_reader()
        try:
            return dict(self._reader.items_for(wanted, deadline))
        except Exception as exc:  # throttled or unreachable: report, never dead-letter
            log.error("hydration failed, %d records will be redelivered: %s", len(wanted), exc)
            return {c.index: exc for c in wanted}
