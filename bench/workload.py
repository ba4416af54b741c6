"""Generated DynamoDB stream batches for the benchmarks. Standard library only, so the
fresh-subprocess probes (peak RSS) measure cdc and not the generator.

Every benchmarked method applies the same batches in the same order:

* batch 0 of a size (the warm-up, never timed) INSERTs keys `base … base+N-1`;
* batch r ≥ 1 MODIFYs the first N/2 of those keys and INSERTs N/2 new keys, shuffled,
  with sequence numbers above every earlier batch, so the guard lets every row through.

Two kinds of item (`WORKLOADS`), named in every report:

* `all-types` (the default, what real tables hold): ~0.5-2 KB of plain JSON, ~1.2 KB on
  average, with every attribute type DynamoDB has: S, N (integers, decimals, 38-digit
  numbers), B, BOOL, NULL, M (nested two deep), L (of numbers and of maps), SS, NS, BS;
* `classic` (the workload of the earlier BENCHMARKS.md figures, kept for comparison):
  ~290 bytes, 10 attributes: numbers (integer and decimal), strings, a boolean, a list
  and a nested map.
"""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Callable, Iterator
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


_LOREM = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
    "matches",
    "near",
    "the",
    "old",
    "harbour",
    "and",
    "an",
    "engineer",
    "measures",
    "every",
    "batch",
    "twice",
    "before",
    "shipping",
    "it",
    "to",
    "a",
    "warehouse",
    "in",
    "the",
    "north",
    "where",
    "pallets",
    "wait",
    "for",
    "the",
    "morning",
    "trucks",
)
_COLOURS = ("black", "white", "red", "navy", "olive", "sand", "teal", "plum")
_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
_USERS = ("importer", "alice", "bob", "pricing-job", "catalogue-sync", "carol")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_LOREM) for _ in range(words))


def _b64(rng: random.Random, size: int) -> str:
    return base64.b64encode(rng.randbytes(size)).decode("ascii")


def all_types_image(key: int, version: int, rng: random.Random) -> dict[str, Any]:
    """One item with every DynamoDB attribute type, ~0.5-2 KB of plain JSON (most of
    the spread is the free-text description), as a catalogue or order table has."""
    words = rng.sample(_WORDS, 3)
    cents = rng.randrange(100, 10_000_000)
    history = [
        {
            "M": {
                "at": {"S": f"2026-{rng.randrange(1, 12):02d}-{rng.randrange(1, 28):02d}T08:00Z"},
                "by": {"S": rng.choice(_USERS)},
                "delta": {"N": f"-{rng.randrange(1, 500)}.{rng.randrange(100):02d}"},
                "note": {"S": _text(rng, rng.randrange(2, 8))},
                "approved": {"BOOL": rng.random() < 0.5},
            }
        }
        for _ in range(rng.randrange(1, 5))
    ]
    return {
        "id": {"N": str(key)},
        "sku": {"S": f"SKU-{key:09d}-{words[0][:2].upper()}"},
        "title": {"S": f"{words[0].title()} {words[1]} {words[2]} edition, catalogue 2026"},
        "description": {"S": _text(rng, rng.randrange(2, 80))},
        "price": {"N": f"{cents // 100}.{cents % 100:02d}"},
        "quantity": {"N": str(rng.randrange(0, 50_000))},
        "weight_kg": {"N": f"0.{rng.randrange(1, 999_999):06d}"},
        "ledger_total": {"N": str(rng.randrange(10**36, 10**38))},  # 37-38 digits: exact only
        "ratio": {"N": f"3.{rng.randrange(10**34, 10**35)}"},  # 36 significant digits
        "tiny": {"N": f"{rng.randrange(1, 99)}E-{rng.randrange(20, 120)}"},
        "huge": {"N": f"{rng.randrange(1, 99)}E+{rng.randrange(20, 120)}"},
        "version": {"N": str(version)},
        "active": {"BOOL": rng.random() < 0.8},
        "discontinued_at": {"NULL": True},
        "thumbnail": {"B": _b64(rng, rng.randrange(24, 180))},
        "tags": {"SS": rng.sample(_TAGS, rng.randrange(1, 5))},
        "sizes": {"SS": rng.sample(_SIZES, rng.randrange(1, 4))},
        "warehouse_ids": {"NS": [str(n) for n in rng.sample(range(1, 999), rng.randrange(1, 6))]},
        "checksums": {"BS": [_b64(rng, 16) for _ in range(rng.randrange(1, 3))]},
        "dimensions": {
            "M": {
                "colour": {"S": rng.choice(_COLOURS)},
                "box": {
                    "M": {
                        "w": {"N": str(rng.randrange(1, 200))},
                        "h": {"N": f"{rng.randrange(1, 200)}.5"},
                        "d": {"N": str(rng.randrange(1, 200))},
                        "fragile": {"BOOL": rng.random() < 0.1},
                    }
                },
                "origin": {
                    "M": {
                        "country": {"S": rng.choice(("DE", "PT", "IE", "SE", "IT", "FR"))},
                        "city": {"S": rng.choice(_CITIES)},
                        "factory": {"N": str(rng.randrange(1, 90))},
                        "certified": {"NULL": True},
                    }
                },
            }
        },
        "ratings": {"L": [{"N": str(rng.randrange(1, 6))} for _ in range(rng.randrange(0, 8))]},
        "history": {"L": history},
        "updated_at": {"S": f"2026-11-22T10:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"},
        "created_epoch": {"N": str(1_700_000_000 + rng.randrange(10**8))},
    }


ImageMaker = Callable[[int, int, random.Random], dict[str, Any]]
# name → (what makes an item, what the report says about it)
WORKLOADS: dict[str, tuple[ImageMaker, str]] = {
    "all-types": (
        all_types_image,
        "every attribute type (S, N: ints, decimals, 38-digit; B, BOOL, NULL, M nested, L, "
        "SS, NS, BS), 25 attributes",
    ),
    "classic": (new_image, "the earlier suite's 10 attributes (numbers, strings, map, list)"),
}
DEFAULT_WORKLOAD = "all-types"


def stream_record(
    event_name: str,
    key: int,
    seq: str,
    version: int,
    rng: random.Random,
    make_image: ImageMaker = new_image,
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
            "NewImage": make_image(key, version, rng),
            "SequenceNumber": seq,
            "SizeBytes": 300,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": ARN,
    }


class Workload:
    """The batches of one size, made one at a time in order (a process holds one batch,
    as a Lambda does): `batch(0)` is the warm-up, `batch(r)` the r-th timed batch."""

    def __init__(
        self,
        size: int,
        base: int,
        seq: SequenceNumbers,
        seed: int = 4,
        kind: str = DEFAULT_WORKLOAD,
    ) -> None:
        self.size = size
        self.base = base
        self.kind = kind
        self._make = WORKLOADS[kind][0]
        self._seq = seq
        self._rng = random.Random(seed * 1_000_003 + size)
        self._next_run = 0

    def batch(self, run: int) -> list[dict[str, Any]]:
        if run != self._next_run:
            raise ValueError(f"batches are made in order: expected run {self._next_run}")
        self._next_run += 1
        size, base, rng, seq = self.size, self.base, self._rng, self._seq
        if run == 0:
            return [
                stream_record("INSERT", base + i, next(seq), 0, rng, self._make)
                for i in range(size)
            ]
        half = size // 2
        make = self._make
        modifies = [stream_record("MODIFY", base + i, "", run, rng, make) for i in range(half)]
        first_new = base + size + (run - 1) * (size - half)
        inserts = [
            stream_record("INSERT", first_new + i, "", run, rng, make) for i in range(size - half)
        ]
        batch = modifies + inserts
        rng.shuffle(batch)
        for record in batch:  # sequence numbers in delivery order, as a shard has them
            number = next(seq)
            record["eventID"] = f"{int(number):032x}"
            record["dynamodb"]["SequenceNumber"] = number
        return batch

    def next_batch(self) -> list[dict[str, Any]]:
        """The batch after the last one made (extra batches: breakdowns, profiles)."""
        return self.batch(self._next_run)

    def batches(self, runs: int) -> list[list[dict[str, Any]]]:
        """The warm-up and `runs` timed batches at once (small sizes only)."""
        return [self.batch(run) for run in range(self._next_run, self._next_run + runs + 1)]


def single_batch(
    size: int, base: int, seed: int = 7, kind: str = DEFAULT_WORKLOAD
) -> list[dict[str, Any]]:
    """A batch of `size` INSERTs of keys from `base` (for one-shot probes)."""
    rng = random.Random(seed)
    seq = SequenceNumbers(SEQUENCE_BASE + base)
    make = WORKLOADS[kind][0]
    return [stream_record("INSERT", base + i, next(seq), 0, rng, make) for i in range(size)]


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
