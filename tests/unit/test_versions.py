"""Versions of stream records (cdc/core/versions.py) and the gaps found from them
(cdc/core/gaps.py): pure, no database.

- a later stream's record beats every record of an earlier stream, whatever the
  sequence numbers; within a stream the sequence number decides;
- labels DynamoDB writes (milliseconds), moto's (microseconds) and `Z` are read as UTC
  milliseconds; anything else is generation 0, where a version is the bare sequence;
- a snapshot sits below its stream's records and above an earlier stream's;
- a new stream is a gap whichever stream is seen first; a late batch is a gap only when
  the table went unapplied longer than the retention and the batch itself is late.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.core.gaps import LATE_BATCH, NEW_STREAM, late_batch_gap, new_stream_gap
from cdc.core.versions import (
    GENERATION_BASE,
    VERSION_DIGITS,
    generation_of,
    generation_of_label,
    label_of,
    rebase,
    sequence_of,
    snapshot_version,
    stream_generation,
    stream_version,
    table_of,
)

ARN = "arn:aws:dynamodb:eu-central-1:123456789012:table/Orders/stream/"


def test_labels_are_utc_milliseconds():
    assert generation_of_label("2026-11-20T08:15:00.123") == 1795162500123
    assert generation_of_label("2026-11-20T08:15:00.123Z") == 1795162500123
    # moto writes microseconds; cut to the millisecond
    assert generation_of_label("2026-11-20T08:15:00.123999") == 1795162500123
    assert generation_of_label("2026-11-20T08:15:00") == 1795162500000
    assert generation_of_label("1970-01-01T00:00:00.000") == 0  # the same as no label
    for bad in ("backfill", "x", "2024", "2026-13-01T00:00:00.000", "2026-11-20 08:15:00"):
        assert generation_of_label(bad) in (None, 0), bad


def test_an_arn_without_a_timestamp_label_is_generation_0():
    assert stream_generation(ARN + "backfill") == 0
    assert stream_generation(ARN + "2026-11-20T08:15:00.123") == 1795162500123
    assert stream_version(0, 111) == 111  # as before generations existed
    assert label_of(ARN + "L") == "L" and table_of(ARN + "L") == "Orders"
    assert table_of("arn:aws:dynamodb:r:1:table/Orders") is None


generations = st.integers(min_value=0, max_value=253402300799999)  # up to 9999-12-31
sequences = st.integers(min_value=0, max_value=GENERATION_BASE - 1)


@given(generations, sequences, generations, sequences)
def test_versions_order_as_generation_then_sequence(g1, s1, g2, s2):
    v1, v2 = stream_version(g1, s1), stream_version(g2, s2)
    assert (v1 < v2) == ((g1, s1) < (g2, s2))
    assert (generation_of(v1), sequence_of(v1)) == (g1, s1)
    assert len(str(v1)) <= VERSION_DIGITS


@given(generations.filter(lambda g: g > 0), sequences.filter(lambda s: s > 0), sequences)
def test_a_snapshot_sits_between_its_stream_and_the_ones_before(g, s, earlier):
    snapshot = snapshot_version(g)
    assert stream_version(g - 1, earlier) < snapshot < stream_version(g, s)


def test_rebase_moves_only_old_versions():
    assert rebase(123, 5) == 5 * GENERATION_BASE + 123
    assert rebase(rebase(123, 5), 7) == rebase(123, 5)


def test_out_of_range_is_refused():
    with pytest.raises(ValueError, match="1-40 digits"):
        stream_version(1, GENERATION_BASE)
    with pytest.raises(ValueError, match="generation"):
        stream_version(-1, 1)


T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_a_new_stream_is_a_gap_whichever_stream_is_seen_first():
    old, new = ARN + "2026-11-20T08:15:00.123", ARN + "2026-11-21T09:00:00.000"
    g_old, g_new = stream_generation(old), stream_generation(new)
    seen_new = new_stream_gap("Orders", new, g_new, {old: (g_old, T0)})
    assert seen_new is not None and seen_new.kind == NEW_STREAM
    assert seen_new.stream_arn == new and seen_new.started == T0
    assert seen_new.ended == datetime(2026, 11, 21, 9, tzinfo=UTC)
    # a late batch of the old stream, the new one seen already: the same gap (one row)
    seen_old = new_stream_gap("Orders", old, g_old, {new: (g_new, None)})
    assert seen_old is not None and seen_old.fingerprint() == seen_new.fingerprint()
    # one stream, or streams without labels: no gap
    assert new_stream_gap("Orders", new, g_new, {new: (g_new, T0)}) is None
    assert new_stream_gap("Orders", new, g_new, {ARN + "backfill": (0, None)}) is None
    assert new_stream_gap("Orders", ARN + "x", 0, {old: (g_old, T0)}) is None


def test_a_late_batch_is_a_gap_an_idle_table_is_not():
    now = T0 + timedelta(hours=30)
    arn = ARN + "2026-11-20T08:15:00.123"
    late = late_batch_gap("Orders", arn, 1, T0, now - timedelta(hours=23), now)
    assert late is not None and late.kind == LATE_BATCH
    # idle for a day, then a fresh write: nothing was lost
    assert late_batch_gap("Orders", arn, 1, T0, now - timedelta(seconds=2), now) is None
    # within the retention
    assert late_batch_gap("Orders", arn, 1, now - timedelta(hours=2), now, now) is None
    # records older than any stream keeps: a replay or a redrive, not the stream
    old = now - timedelta(days=400)
    assert late_batch_gap("Orders", arn, 1, old - timedelta(days=2), old, now) is None
    assert late_batch_gap("Orders", arn, 1, None, now, now) is None
