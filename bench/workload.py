"""Generated DynamoDB stream batches for the benchmarks. Standard library only, so the
fresh-subprocess probes (peak RSS) measure cdc and not the generator.

Every benchmarked method applies the same batches in the same order:

* batch 0 of a size (the warm-up, never timed) INSERTs keys `base … base+N-1`;
* batch r ≥ 1 MODIFYs the first N/2 of those keys and INSERTs N/2 new keys, shuffled,
  with sequence numbers above every earlier batch, so the guard lets every row through.

Items are ~300 bytes of plain JSON with 10 attributes of mixed types: numbers (integer
and decimal), strings, a boolean, a list and a nested map.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

SOURCE_TABLE = "BenchItems"
REPLICA_TABLE = "bench_items"  # snake(SOURCE_TABLE): where the handler writes
ARN = (
    "arn:aws:dynamodb:eu-central-1:123456789012:table/"
    f"{SOURCE_TABLE}/stream/2026-11-22T00:00:00.000"
)
SEQUENCE_BASE = 49_600_000_000_000_000_000  # 23 digits, like real shard sequence numbers
EVENT_TIME = 1_795_305_600  # 2026-11-22T00:00:00Z

_WORDS = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
)
_CITIES = ("Berlin", "Frankfurt", "Lisbon", "Dublin", "Stockholm", "Milan", "Paris")
_TAGS = ("new", "sale", "clearance", "bundle", "eco", "premium", "gift", "limited")


class SequenceNumbers:
    """Strictly increasing stream sequence numbers, shared by all batches of a run."""

    def __init__(self, start: int = SEQUENCE_BASE) -> None:
        self._next = itertools.count(start)

    def __next__(self) -> str:
        return str(next(self._next))

    def __iter__(self) -> Iterator[str]:
        return self


def new_image(key: int, version: int, rng: random.Random) -> dict[str, Any]:
    """One item as a DynamoDB AttributeValue map (what a NewImage holds)."""
    words = rng.sample(_WORDS, 3)
    cents = rng.randrange(100, 100_000)
    return {
        "id": {"N": str(key)},
        "sku": {"S": f"SKU-{key:09d}-{words[0][:2].upper()}"},
        "name": {"S": f"{words[0].title()} {words[1]} {words[2]} edition, catalogue 2026"},
        "price": {"N": f"{cents // 100}.{cents % 100:02d}"},
        "quantity": {"N": str(rng.randrange(0, 5_000))},
        "active": {"BOOL": rng.random() < 0.8},
        "tags": {"L": [{"S": t} for t in rng.sample(_TAGS, rng.randrange(1, 4))]},
        "address": {
            "M": {
                "street": {"S": f"{rng.randrange(1, 999)} {words[1].title()} Street"},
                "city": {"S": rng.choice(_CITIES)},
                "zip": {"S": f"{rng.randrange(10_000, 99_999)}"},
                "floor": {"N": str(rng.randrange(0, 40))},
            }
        },
        "updated_at": {"S": f"2026-11-22T10:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"},
        "rating": {"N": f"{rng.randrange(0, 5)}.{rng.randrange(0, 100):02d}"},
    }


def stream_record(
    event_name: str, key: int, seq: str, version: int, rng: random.Random
) -> dict[str, Any]:
    return {
        "eventID": f"{int(seq or 0):032x}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-central-1",
        "dynamodb": {
            "ApproximateCreationDateTime": EVENT_TIME + version,
            "Keys": {"id": {"N": str(key)}},
            "NewImage": new_image(key, version, rng),
            "SequenceNumber": seq,
            "SizeBytes": 300,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": ARN,
    }


class Workload:
    """The batches of one size, made one at a time in order (a process holds one batch,
    as a Lambda does): `batch(0)` is the warm-up, `batch(r)` the r-th timed batch."""

    def __init__(self, size: int, base: int, seq: SequenceNumbers, seed: int = 4) -> None:
        self.size = size
        self.base = base
        self._seq = seq
        self._rng = random.Random(seed * 1_000_003 + size)
        self._next_run = 0

    def batch(self, run: int) -> list[dict[str, Any]]:
        if run != self._next_run:
            raise ValueError(f"batches are made in order: expected run {self._next_run}")
        self._next_run += 1
        size, base, rng, seq = self.size, self.base, self._rng, self._seq
        if run == 0:
            return [stream_record("INSERT", base + i, next(seq), 0, rng) for i in range(size)]
        half = size // 2
        modifies = [stream_record("MODIFY", base + i, "", run, rng) for i in range(half)]
        first_new = base + size + (run - 1) * (size - half)
        inserts = [stream_record("INSERT", first_new + i, "", run, rng) for i in range(size - half)]
        batch = modifies + inserts
        rng.shuffle(batch)
        for record in batch:  # sequence numbers in delivery order, as a shard has them
            number = next(seq)
            record["eventID"] = f"{int(number):032x}"
            record["dynamodb"]["SequenceNumber"] = number
        return batch

    def batches(self, runs: int) -> list[list[dict[str, Any]]]:
        """The warm-up and `runs` timed batches at once (small sizes only)."""
        return [self.batch(run) for run in range(self._next_run, self._next_run + runs + 1)]


def single_batch(size: int, base: int, seed: int = 7) -> list[dict[str, Any]]:
    """A batch of `size` INSERTs of keys from `base` (for one-shot probes)."""
    rng = random.Random(seed)
    seq = SequenceNumbers(SEQUENCE_BASE + base)
    return [stream_record("INSERT", base + i, next(seq), 0, rng) for i in range(size)]


def event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


class FakeContext:
    """What the handler reads of Lambda's context: a 15-minute deadline, as a batch
    of a Lambda configured for the maximum timeout would see."""

    def __init__(self, remaining_ms: int = 900_000) -> None:
        import time

        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int((self._deadline - time.monotonic()) * 1000))
