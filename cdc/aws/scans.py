"""Scan pacing shared by backfill and verify: the page size for a read-capacity budget
and a token-bucket rate limiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def scan_limit(page_size: int | None, rate: float | None) -> int | None:
    """Scan's Limit: the page size asked for, at most a second's worth at `rate` (a
    page is reserved whole before it is read, so it must fit the rate)."""
    if rate is None:
        return page_size
    return max(1, min(page_size or 1000, int(rate)))


class RateLimiter:
    """At most `rate` items per second, all segments (threads) together, from the first
    item on: by any time t after the limiter was made, at most rate * t items have been
    asked for.

    A request reserves its items before it is sent (`acquire`, with the page size,
    which `BackfillOptions.scan_limit` caps to one second's worth) and waits until that
    many items' worth of time has passed since the previous reservation ended; a page
    that brings fewer items than reserved gives the rest back (`refund`). No burst is
    saved up while idle: the rate holds over every interval, not just on average.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()  # when the items reserved so far are paid for
        self._lock = threading.Lock()

    def acquire(self, items: int, stop: threading.Event | None = None) -> bool:
        """Wait until `items` may be read; False if `stop` was set meanwhile."""
        with self._lock:
            self._next = max(self._clock(), self._next) + items / self.rate
            wake = self._next
        while True:
            delay = wake - self._clock()
            if delay <= 0:
                return True
            if stop is not None:
                if stop.wait(delay):
                    return False
            else:
                self._sleep(delay)

    def refund(self, items: int) -> None:
        """Give back what a request reserved and did not get (a short page)."""
        if items > 0:
            with self._lock:
                self._next -= items / self.rate
