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
"""

from __future__ import annotations

import sqlite3
from enum import Enum

from sqlalchemy import exc as sa_exc


class ErrorKind(Enum):
    TRANSIENT = "transient"
    ROW = "row"
    SYSTEMIC = "systemic"


# PostgreSQL SQLSTATE classes and codes.
_PG_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")  # connection, rollback, resources,
# operator intervention (admin shutdown 57P01, cannot connect now 57P03, query canceled
# by statement_timeout 57014), system error
_PG_TRANSIENT_CODES = frozenset({"55P03", "55006"})  # lock not available, object in use
_PG_ROW_CLASSES = ("22", "23")  # data exception, integrity constraint violation

# MySQL / MariaDB error numbers.
_MYSQL_TRANSIENT = frozenset(
    {
        1205,  # lock wait timeout
        1213,  # deadlock
        1040,  # too many connections
        1053,  # server shutdown in progress
        1077,  # normal shutdown
        1152,  # aborted connection
        1159,  # net read timeout
        1160,  # net write error
        1161,  # net write timeout
        1317,  # query execution was interrupted (KILL QUERY, a server shutting down)
        1927,  # connection killed (MariaDB)
        1969,  # query execution interrupted, max_statement_time exceeded (MariaDB)
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection
        3024,  # query execution interrupted, max_execution_time exceeded (MySQL)
        4031,  # disconnected by the server because of inactivity
    }
)
_MYSQL_ROW = frozenset(
    {
        1048,  # column cannot be null
        1062,  # duplicate entry
        1264,  # out of range value
        1364,  # a NOT NULL column without a value (a row without its required column)
        1292,  # incorrect datetime value
        1366,  # incorrect value for column
        1406,  # data too long
        1416,  # cannot get geometry object
        3140,  # invalid JSON text
        4025,  # CHECK constraint failed (MariaDB JSON_VALID)
        3819,  # check constraint violated (MySQL)
    }
)


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
    module = type(orig).__module__
    if module.startswith("pymysql") or module.startswith("MySQLdb"):
        # By error number: PyMySQL 1.1 also reports a SQLSTATE, but MySQL's are coarse
        # (HY000 for a lock wait timeout and for a missing table alike).
        return _classify_mysql(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        if sqlstate in _PG_TRANSIENT_CODES or sqlstate.startswith(_PG_TRANSIENT_CLASSES):
            return ErrorKind.TRANSIENT
        if sqlstate.startswith(_PG_ROW_CLASSES):
            return ErrorKind.ROW
        return ErrorKind.SYSTEMIC
    if module.startswith("psycopg"):
        # psycopg raises OperationalError with no SQLSTATE when it cannot connect.
        name = type(orig).__name__
        if name in ("OperationalError", "InterfaceError"):
            return ErrorKind.TRANSIENT
        if name == "DataError":
            return ErrorKind.ROW
        return ErrorKind.SYSTEMIC
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        if "locked" in message or "busy" in message or "disk i/o" in message:
            return ErrorKind.TRANSIENT
        return ErrorKind.SYSTEMIC
    if isinstance(orig, sqlite3.IntegrityError | sqlite3.DataError):
        return ErrorKind.ROW
    return ErrorKind.SYSTEMIC


def _classify_mysql(orig: BaseException) -> ErrorKind:
    code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
    if code in _MYSQL_TRANSIENT:
        return ErrorKind.TRANSIENT
    if code in _MYSQL_ROW:
        return ErrorKind.ROW
    if type(orig).__name__ in ("OperationalError", "InterfaceError") and code is None:
        return ErrorKind.TRANSIENT
    # Numbers not listed: the SQLSTATE class still tells a connection exception (08) or
    # a rolled-back transaction (40) from a data (22) or integrity (23) problem.
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if sqlstate.startswith(("08", "40")):
        return ErrorKind.TRANSIENT
    if sqlstate.startswith(_PG_ROW_CLASSES):
        return ErrorKind.ROW
    return ErrorKind.SYSTEMIC


def describe(error: BaseException) -> tuple[str, str]:
    """(error class, message) for a dead letter or a log line: the driver's own
    exception and its first line, without SQLAlchemy's echo of the statement and
    parameters (which could hold a whole batch of data)."""
    orig = getattr(error, "orig", None) or error
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"{type(orig).__module__}.{type(orig).__name__}", message
