"""The time left in a Lambda invocation (or none outside Lambda), and the reserve kept
to answer before it ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# What is kept back from the deadline to answer Lambda after the last attempt.
ANSWER_RESERVE_S = 1.0


@dataclass
class Deadline:
    """Time left to work, from Lambda's `context.get_remaining_time_in_millis()`;
    unbounded for the CLI."""

    remaining_ms: Callable[[], int] | None = None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_context(cls, context: Any) -> Deadline:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return cls(remaining if callable(remaining) else None)

    def remaining(self) -> float | None:
        """Seconds left, or None when there is no deadline."""
        if self.remaining_ms is None:
            return None
        return float(self.remaining_ms()) / 1000.0
