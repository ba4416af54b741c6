"""Named tenacity policies for writing a batch.

Transient errors are retried with exponential backoff and full jitter (so ten
invocations hit by the same failover do not retry in lock-step), and the retrying stops
early enough to answer Lambda before its deadline: records not committed by then are
reported in `batchItemFailures` and redelivered, which is always better than a timeout
(a timed-out invocation fails the whole batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from cdc.core.deadline import ANSWER_RESERVE_S, Deadline
from cdc.sql.errors import ErrorKind, classify


class stop_before_deadline(stop_base):
    """Stop when the next sleep plus a typical attempt so far would not leave `reserve`
    seconds to answer."""

    def __init__(self, deadline: Deadline, reserve: float = ANSWER_RESERVE_S) -> None:
        self.deadline = deadline
        self.reserve = reserve

    def __call__(self, retry_state: RetryCallState) -> bool:
        remaining = self.deadline.remaining()
        if remaining is None:
            return False
        attempts = max(1, retry_state.attempt_number)
        typical_attempt = (retry_state.seconds_since_start or 0.0) / attempts
        sleep = retry_state.upcoming_sleep or 0.0
        return remaining - sleep - typical_attempt < self.reserve


class wait_within_deadline:
    """Exponential backoff with full jitter, shortened so an attempt still fits before
    the deadline: a short outage is ridden out instead of reported early."""

    def __init__(self, deadline: Deadline, base: Any, reserve: float = ANSWER_RESERVE_S) -> None:
        self.deadline = deadline
        self.base = base
        self.reserve = reserve

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self.base(retry_state))
        remaining = self.deadline.remaining()
        if remaining is None:
            return wait
        attempts = max(1, retry_state.attempt_number)
        typical_attempt = (retry_state.seconds_since_start or 0.0) / attempts
        return max(0.0, min(wait, remaining - self.reserve - typical_attempt))


class stop_systemic_after(stop_base):
    """A systemic error (a missing table, a permission) is retried only this often: a
    dropped table is recreated on the retry, anything else waits for a person."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        return (
            error is not None
            and classify(error) is ErrorKind.SYSTEMIC
            and retry_state.attempt_number >= self.attempts
        )


def _retryable(error: BaseException) -> bool:
    return classify(error) is not ErrorKind.ROW


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for one batch: `max_attempts` without a deadline (the CLI), as many as
    fit before the deadline with one (Lambda)."""

    max_attempts: int = 8
    initial_wait: float = 0.1
    max_wait: float = 5.0
    systemic_attempts: int = 2

    def retrying(
        self, deadline: Deadline, on_retry: Callable[[RetryCallState], None] | None = None
    ) -> Retrying:
        attempts = self.max_attempts if deadline.remaining_ms is None else 10_000
        return Retrying(
            retry=retry_if_exception(_retryable),
            wait=wait_within_deadline(
                deadline, wait_random_exponential(multiplier=self.initial_wait, max=self.max_wait)
            ),
            stop=(
                stop_after_attempt(attempts)
                | stop_before_deadline(deadline)
                | stop_systemic_after(self.systemic_attempts)
            ),
            before_sleep=on_retry,
            reraise=True,
        )


WRITE_BATCH = RetryPolicy()
