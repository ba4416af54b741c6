"""The one place where database errors are classified.

Three kinds, because the right reaction differs:

* TRANSIENT: the database or the network is having a moment (connection lost,
  deadlock, serialization failure, too many connections, shutting down). Retry the
  whole transaction with backoff; if time runs out, report the records to Lambda.
* ROW: this row's data is unacceptable (class 22 data exception, class 23 integrity
  violation, a value the driver cannot encode). Retrying cannot help: isolate the row
  and dead-letter it.
* SYSTEMIC: anything else (a missing table, a permission, a bug). It is no fault of the
  record, so it is never dead-lettered; it is retried once and then reported, so the
  shard waits for a person rather than losing data.

The driver's own codes are its backend's to read (Backend.classify_error, found by the
exception's module); what is left is common to every database.
"""

from __future__ import annotations

from enum import Enum

from sqlalchemy import exc as sa_exc

from cdc.sql.backends import registry


class ErrorKind(Enum):
    TRANSIENT = "transient"
    ROW = "row"
    SYSTEMIC = "systemic"


# The SQL standard's SQLSTATE classes: connection exception, transaction rollback.
_TRANSIENT_CLASSES = ("08", "40")
_ROW_CLASSES = ("22", "23")  # data exception, integrity constraint violation


def classify(error: BaseException) -> ErrorKind:
    """How to react to `error`, raised while writing a batch."""
    if isinstance(error, sa_exc.PendingRollbackError):
        return _after_failed_transaction(error)
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return ErrorKind.TRANSIENT
    if isinstance(error, sa_exc.TimeoutError):  # connection pool exhausted
        return ErrorKind.TRANSIENT
    if isinstance(error, sa_exc.StatementError):
        orig = error.orig
        if orig is None:
            return ErrorKind.SYSTEMIC
        if not isinstance(error, sa_exc.DBAPIError):
            # The driver refused to encode a value before anything reached the server
            # (a lone surrogate, a number it cannot represent): a problem of this row.
            return (
                ErrorKind.ROW if isinstance(orig, ValueError | TypeError) else ErrorKind.SYSTEMIC
            )  # UnicodeError is a ValueError
        return _classify_driver_error(orig)
    if isinstance(error, ConnectionError | TimeoutError):
        return ErrorKind.TRANSIENT
    if isinstance(error, UnicodeError):  # a value the driver cannot encode: this row's
        return ErrorKind.ROW
    return _classify_driver_error(error)


def _after_failed_transaction(error: sa_exc.PendingRollbackError) -> ErrorKind:
    """A statement on a connection whose transaction already failed (the connection
    died during a table's creation or a migration, and the clean-up tried another
    statement on it). The retry starts on a fresh connection, so the error that broke
    the transaction decides: a connection lost is transient; one that is not (a
    permission) is systemic. With no such error at hand, retrying is what can help."""
    cause = error.__cause__ or error.__context__
    if cause is None or isinstance(cause, sa_exc.PendingRollbackError):
        return ErrorKind.TRANSIENT
    kind = classify(cause)
    return ErrorKind.SYSTEMIC if kind is ErrorKind.ROW else kind


def _classify_driver_error(orig: BaseException) -> ErrorKind:
    """The backend whose driver raised `orig` knows its codes (Backend.classify_error)."""
    backend = registry.backend_of_error(orig)
    return backend.classify_error(orig) if backend is not None else classify_by_sqlstate(orig)


def classify_by_sqlstate(orig: BaseException) -> ErrorKind:
    """By the standard SQLSTATE classes alone: what a backend falls back to for codes it
    does not list."""
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if not isinstance(sqlstate, str):
        return ErrorKind.SYSTEMIC
    if sqlstate.startswith(_TRANSIENT_CLASSES):
        return ErrorKind.TRANSIENT
    if sqlstate.startswith(_ROW_CLASSES):
        return ErrorKind.ROW
    return ErrorKind.SYSTEMIC


def describe(error: BaseException) -> tuple[str, str]:
    """(error class, message) for a dead letter or a log line: the driver's own
    exception and its first line, without SQLAlchemy's echo of the statement and
    parameters (which could hold a whole batch of data)."""
    orig = getattr(error, "orig", None) or error
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"{type(orig).__module__}.{type(orig).__name__}", message
