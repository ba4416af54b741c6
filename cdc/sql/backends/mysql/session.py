"""MySQL and MariaDB sessions: time limits, exact collations, error numbers (the MySQL
backend's helpers, cdc/sql/backends/mysql)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError

from cdc.sql.errors import ErrorKind, classify_by_sqlstate

CONNECT_TIMEOUT_S = 5
# DECIMAL's most digits; an exact number with more is kept as text.
MAX_DECIMAL_DIGITS = 65
# The named lock that serialises concurrent `cdc migrate` runs.
MIGRATION_LOCK = "cdc_migrate"

# MySQL / MariaDB error numbers.
_TRANSIENT = frozenset(
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
_ROW = frozenset(
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


def classify_mysql(orig: BaseException) -> ErrorKind:
    """By error number: PyMySQL 1.1 also reports a SQLSTATE, but MySQL's are coarse
    (HY000 for a lock wait timeout and for a missing table alike)."""
    code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
    if code in _TRANSIENT:
        return ErrorKind.TRANSIENT
    if code in _ROW:
        return ErrorKind.ROW
    if type(orig).__name__ in ("OperationalError", "InterfaceError") and code is None:
        return ErrorKind.TRANSIENT
    # Numbers not listed: the SQLSTATE class still tells a connection exception (08) or
    # a rolled-back transaction (40) from a data (22) or integrity (23) problem.
    return classify_by_sqlstate(orig)


def exact_collation(dialect: Dialect) -> str:
    """The utf8mb4 collation that compares byte for byte on this MySQL or MariaDB server.

    `utf8mb4_bin` is case-sensitive but PAD SPACE (`'a' = 'a '`), so keys that differ
    only by trailing spaces would be one row. The NO PAD binary collations are exact:
    `utf8mb4_nopad_bin` (MariaDB 10.2+), `utf8mb4_0900_bin` (MySQL 8.0.17+). Before the
    first connection the server is unknown: the URL's name decides (`mariadb://`).
    """
    if getattr(dialect, "is_mariadb", False) or dialect.name == "mariadb":
        return "utf8mb4_nopad_bin"
    version = dialect.server_version_info
    if version is not None and tuple(version[:3]) < (8, 0, 17):
        raise ValueError(
            "cdc needs MySQL 8.0.17 or later (or MariaDB 10.2 or later) for exact key "
            f"comparison (a NO PAD binary collation); this server is {version}"
        )
    return "utf8mb4_0900_bin"


# conn.info key: the session variables cdc changed on this pooled connection.
SESSION_LIMITED = "cdc_session_limited"


def mysql_session_limits(remaining_s: float, is_mariadb: bool) -> dict[str, int | float]:
    """Session variables that keep every statement within `remaining_s` seconds, one
    second kept back to answer (PostgreSQL's statement_timeout plays this part there).

    MariaDB's `max_statement_time` (seconds) bounds any statement, lock waits included;
    MySQL's `max_execution_time` (milliseconds) bounds SELECTs only, so the row and
    metadata lock waits, where a write spends its time when someone else holds the row,
    are bounded too (`innodb_lock_wait_timeout`, `lock_wait_timeout`: whole seconds, at
    least 1; the default waits are 50 s and a day)."""
    budget = max(0.1, remaining_s - 1.0)
    waits = max(1, int(budget))
    limits: dict[str, int | float] = (
        {"max_statement_time": round(budget, 3)}
        if is_mariadb
        else {"max_execution_time": max(1, round(budget * 1000))}
    )
    limits.update(innodb_lock_wait_timeout=waits, lock_wait_timeout=waits)
    return limits


def set_session(conn: Connection, values: Mapping[str, int | float]) -> None:
    """SET SESSION `values` on a MySQL connection; they are put back to the server's
    defaults when the pooled connection is next checked out, so a limit meant for one
    batch never reaches the next user of the connection (a migration, a CLI command)."""
    names = sorted(values)
    assignments = ", ".join(f"{name} = %s" for name in names)  # names are ours, not data
    conn.exec_driver_sql(f"SET SESSION {assignments}", tuple(values[n] for n in names))
    conn.info[SESSION_LIMITED] = tuple(sorted({*conn.info.get(SESSION_LIMITED, ()), *names}))


def reset_session_limits(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        names = record.info.pop(SESSION_LIMITED, ())
        if not names:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SET SESSION " + ", ".join(f"{n} = DEFAULT" for n in names))
            finally:
                cursor.close()
        except Exception as exc:
            raise DisconnectionError(f"could not reset a pooled connection: {exc}") from exc
