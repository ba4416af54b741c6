"""Versions of DynamoDB Streams records: one integer per change, ordering every change
of one source key (README: Stream generations; docs/architecture.md, section 3).

A table's stream is named by its label, the timestamp at the end of its ARN
(`arn:aws:dynamodb:REGION:ACCOUNT:table/Orders/stream/2026-11-20T08:15:00.123`). AWS does
not promise that a new stream's sequence numbers exceed an old one's, so the version of a
record is the pair (generation, sequence number), the generation being the label in
milliseconds since the epoch, encoded as one integer:

    version = generation_ms * 10^40 + sequence_number

A sequence number has at most 40 digits, so the pair orders as the integer does: a
record of a later stream beats every record of an earlier one, and within one stream
the sequence number decides. A label up to the year 9999 has 15 digits in
milliseconds: a version has at most 55 digits, and the columns hold 65 (MySQL's
DECIMAL maximum; PostgreSQL NUMERIC(65,0); 65 zero-padded characters on SQLite).

Accepted labels: `YYYY-MM-DDTHH:MM:SS` with an optional fraction of 1-6 digits (what
DynamoDB writes: milliseconds; moto: microseconds) and an optional `Z`, read as UTC and
cut to the millisecond. Any other label (the synthetic `backfill` stream, test ARNs
such as `stream/x`) is generation 0: its records keep their bare sequence numbers as
versions, exactly as before generations existed, and lose to every record of a stream
with a real label. A real DynamoDB stream always has a timestamp label; refusing the
others would dead-letter records that cdc applied correctly before.

Table snapshots (a Scan backfill, an export load) are placed at `snapshot_version(G)`
= G * 10^40 + 0, where G is the generation of the stream being consumed when the
snapshot is taken: below every record of that stream (sequence numbers are positive),
above every record of each earlier stream.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

SEQUENCE_DIGITS = 40  # a DynamoDB Streams sequence number: 1-40 decimal digits
GENERATION_BASE: int = 10**SEQUENCE_DIGITS
VERSION_DIGITS = 65  # the width of the version columns (_cdc_seq, tombstones, checkpoints)
MAX_GENERATION: int = 10 ** (VERSION_DIGITS - SEQUENCE_DIGITS) - 1

_LABEL = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?Z?"
)
_GENERATIONS: dict[str, int] = {}


def generation_of_label(label: str) -> int | None:
    """The label's time in milliseconds since the epoch, or None if it is not a
    timestamp label."""
    match = _LABEL.fullmatch(label)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    fraction = (match[7] or "").ljust(6, "0")
    try:
        moment = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=UTC)
    except ValueError:  # 2026-13-45T…
        return None
    millis = int(moment.timestamp()) * 1000 + int(fraction) // 1000
    return millis if 0 <= millis <= MAX_GENERATION else None


def label_of(stream_arn: str) -> str:
    """The label of a stream ARN (what follows `/stream/`), or "" without one."""
    _, found, label = stream_arn.rpartition("/stream/")
    return label if found else ""


def stream_generation(stream_arn: str) -> int:
    """The generation of a stream ARN: its label in milliseconds, 0 for a label that is
    not a timestamp (see the module's docstring). Cached: a batch carries a few ARNs."""
    generation = _GENERATIONS.get(stream_arn)
    if generation is None:
        generation = generation_of_label(label_of(stream_arn)) or 0
        if len(_GENERATIONS) < 10_000:
            _GENERATIONS[stream_arn] = generation
    return generation


def stream_version(generation: int, sequence: int) -> int:
    """The version of the record with `sequence` in the stream of `generation`."""
    if not 0 <= sequence < GENERATION_BASE:
        raise ValueError(f"sequence number {sequence} does not have 1-40 digits")
    if not 0 <= generation <= MAX_GENERATION:
        raise ValueError(f"generation {generation} is out of range")
    return generation * GENERATION_BASE + sequence


def snapshot_version(generation: int) -> int:
    """Where a snapshot taken while the stream of `generation` is consumed sits: below
    that stream's records, above every earlier stream's."""
    return stream_version(generation, 0)


def generation_of(version: int) -> int:
    return version // GENERATION_BASE


def sequence_of(version: int) -> int:
    """The sequence number inside a version (what a stream's API takes back)."""
    return version % GENERATION_BASE


def rebase(version: int, generation: int) -> int:
    """A version stored before generations existed (a bare sequence number, below
    10^40), moved into `generation`; a version that has one already is left alone."""
    return version if version >= GENERATION_BASE else stream_version(generation, version)


def label_time(generation: int) -> datetime | None:
    """The moment a generation names (None for generation 0: no label)."""
    if generation <= 0:
        return None
    return datetime.fromtimestamp(generation / 1000, tz=UTC)


def table_of(stream_arn: str) -> str | None:
    """The table name inside a stream ARN (`…:table/Orders/stream/LABEL`), unchecked."""
    _, found, rest = stream_arn.partition(":table/")
    table, slash, _ = rest.partition("/stream/")
    return table if found and slash and table else None
