"""Terminal progress for `cdc backfill`: a line every few seconds (logs, pipes) or a tqdm
bar (a terminal)."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    pass


class LineProgress:
    """Plain lines every `interval` seconds: for logs and CI, where a bar is noise."""

    def __init__(
        self,
        table: str,
        interval: float = 10.0,
        out: TextIO | None = None,
        unit: str = "segments",
    ) -> None:
        self.table = table
        self.unit = unit
        self.interval = interval
        self.out = out or sys.stderr
        self._lock = threading.Lock()
        self.items = self.done = self.segments = self._items_this_run = 0
        self._started = self._last = time.monotonic()

    def start(self, items_before: int, segments_done: int, segments: int) -> None:
        self.items, self.done, self.segments = items_before, segments_done, segments
        self._started = self._last = time.monotonic()

    def advance(self, items: int, segment_done: bool) -> None:
        with self._lock:
            self.items += items
            self._items_this_run += items
            self.done += int(segment_done)
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._print(now)

    def _print(self, now: float) -> None:
        rate = self._items_this_run / max(now - self._started, 1e-9)
        print(
            f"backfill {self.table}: {self.items:,} items ({rate:,.0f}/s), "
            f"{self.done}/{self.segments} {self.unit} done",
            file=self.out,
            flush=True,
        )

    def close(self) -> None:
        with self._lock:
            self._print(time.monotonic())


class BarProgress:
    """A tqdm bar on a terminal: items, items/s and segments done."""

    def __init__(self, table: str, total: int | None, unit: str = "segments") -> None:
        self.table = table
        self.unit = unit
        self.total = total or None  # DynamoDB's ItemCount: an estimate, may be 0
        self._bar: Any = None
        self._lock = threading.Lock()
        self.done = self.segments = 0

    def start(self, items_before: int, segments_done: int, segments: int) -> None:
        from tqdm import tqdm

        self.done, self.segments = segments_done, segments
        self._bar = tqdm(
            total=self.total,
            initial=items_before,
            unit=" items",
            desc=f"backfill {self.table}",
            dynamic_ncols=True,
        )
        self._bar.set_postfix_str(f"{self.unit} {self.done}/{self.segments}")

    def advance(self, items: int, segment_done: bool) -> None:
        with self._lock:
            self.done += int(segment_done)
            if segment_done:
                self._bar.set_postfix_str(f"{self.unit} {self.done}/{self.segments}", refresh=False)
            self._bar.update(items)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
