"""The Lambda entry point: `cdc.handler.handler(event, context)`.

Importing this module does no I/O and does not import boto3. The settings, engine and
replicator are built on the first invocation and kept for the life of the warm
container (Lambda freezes the process between invocations and thaws it for the next;
a pooled connection idle for more than a moment is checked before use, so one that died
while frozen is replaced).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cdc.app.engines import engine_for
from cdc.app.observe import Invocation, emit
from cdc.config import load_settings
from cdc.core.deadline import Deadline
from cdc.core.errors import InvalidInvocation
from cdc.jobs.replicate import Replicator
from cdc.sources.formats import batch_shard

log = logging.getLogger("cdc")

_replicator: Replicator | None = None
_cold_start = True


def replicator() -> Replicator:
    """The container's replicator, built once. Configuration errors raise here, on the
    first invocation, naming the setting and what it accepts (a broken invocation must
    fail loudly); cdc.config reads and checks every setting at once."""
    global _replicator
    if _replicator is None:
        settings = load_settings()
        log.setLevel(settings.log_level)
        # With a secret, it is fetched here, once per container (and again on rotation).
        _replicator = Replicator(engine_for(settings), settings)
    return _replicator


def handler(event: Any, context: Any) -> dict[str, list[dict[str, str]]]:
    global _cold_start
    cold_start, _cold_start = _cold_start, False
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise InvalidInvocation(
            "expected a DynamoDB Streams or Kinesis event: an object with a 'Records' list"
        )
    container = replicator()
    with _no_gc_pauses():
        records = event["Records"]
        # Kinesis checkpoints are kept per shard, named by the records' eventID.
        result = container.process(
            records, Deadline.from_context(context), shard_id=batch_shard(records)
        )
    invocation = Invocation.from_context(
        context,
        service=container.settings.service,
        cold_start=cold_start,
        # Not a setting: the Lambda runtime sets it anew for every invocation.
        trace_header=os.environ.get("_X_AMZN_TRACE_ID"),
    )
    emit(result, container.settings, invocation)
    return result.response()


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """The cyclic garbage collector stays off while a batch is applied. The event
    holds tens of thousands of young objects that all outlive the batch, so every
    collection pass walks them for nothing (a tenth of a 1,000-record batch's CPU,
    measured in BENCHMARKS.md); the batch itself makes next to no reference cycles,
    and its other garbage is freed by reference counting as usual. Collection
    resumes, in this process that cdc owns, when the batch is done."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def reset() -> None:
    """Forget the cached replicator, as a new container would (tests, or after
    changing the environment)."""
    global _replicator, _cold_start
    if _replicator is not None:
        _replicator.engine.dispose()
    _replicator = None
    _cold_start = True
