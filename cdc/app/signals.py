"""SIGINT/SIGTERM handling for the long-running commands: finish the current batch,
then stop."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


@contextmanager
def stop_on_signals(stop: threading.Event, what: str = "the current batch") -> Iterator[None]:
    """Make SIGINT (Ctrl-C) and SIGTERM (docker stop, Kubernetes) set `stop`, so a loop
    finishes `what` and returns cleanly; a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        print(
            f"cdc: stopping after {what} (Ctrl-C again to interrupt at once)",
            file=sys.stderr,
        )

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
