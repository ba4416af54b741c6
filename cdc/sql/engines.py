"""Engines: created once per process (per warm Lambda container) and reused."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError

from cdc.core.errors import ConfigError

if TYPE_CHECKING:
    pass

CONNECT_TIMEOUT_S = 5


def make_engine(
    url: URL, *, connect_args: Mapping[str, Any] | None = None, **overrides: Any
) -> Engine:
    """An engine for `url`; `connect_args` add to (and override) the defaults here."""
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    if backend == "postgresql":
        # Fail fast when the server is unreachable: the retry policy decides how long
        # to keep trying, not a 2-minute TCP timeout.
        defaults = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "cdc"}
    elif backend in ("mysql", "mariadb"):
        defaults = {"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"}
        # READ COMMITTED: no gap locks, so the row locks a batch takes (in key order)
        # are all it waits on; concurrent batches then cannot deadlock on gaps.
        kwargs["isolation_level"] = "READ COMMITTED"
        # The pool's rollback on return is replaced by one that skips it after a
        # COMMIT (_rollback_on_return_unless_ended).
        kwargs["pool_reset_on_return"] = None
    elif backend == "sqlite":
        defaults = {"timeout": 30}
    kwargs["connect_args"] = {**defaults, **(connect_args or {})}
    kwargs.update(overrides)
    try:
        engine = create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        hint = " (pip install 'cdc[mysql]')" if backend in ("mysql", "mariadb") else ""
        raise ConfigError(
            f"the database driver for {url.drivername!r} is not installed: {exc.name}{hint}"
        ) from None
    if backend == "sqlite":
        _fix_sqlite_transactions(engine)
    _ping_when_idle(engine)
    if backend in ("mysql", "mariadb"):
        _reset_session_limits(engine)
        if kwargs.get("pool_reset_on_return", "rollback") is None:
            _rollback_on_return_unless_ended(engine)
    return engine


# conn.info key: the pooled connection's last command through SQLAlchemy ended its
# transaction (COMMIT or ROLLBACK), and nothing has run on it since.
TRANSACTION_ENDED = "cdc_transaction_ended"


def _rollback_on_return_unless_ended(engine: Engine) -> None:
    """Roll a connection back when it returns to the pool, unless its transaction has
    just ended. SQLAlchemy's pool rolls back every returned connection, in case a
    transaction is still open; pymysql sends that ROLLBACK to the server even right
    after a COMMIT: one round trip per batch for nothing. A connection returned
    mid-transaction (a statement after the COMMIT, a failed COMMIT, raw DBAPI use since
    the checkout) is still rolled back, so its locks never outlive its use. Only
    statements run through SQLAlchemy are seen: code that takes the DBAPI connection
    after a commit must end its own transaction."""

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        record.info[TRANSACTION_ENDED] = False

    def mark(conn: Connection | None, ended: bool) -> None:
        # An invalidated connection is discarded, not reset (and its info is gone).
        if conn is not None and not conn.invalidated and not conn.closed:
            conn.info[TRANSACTION_ENDED] = ended

    @event.listens_for(engine, "before_cursor_execute")
    def _executing(conn: Connection, *args: Any) -> None:
        mark(conn, False)

    # Both are told before the command is sent; if it fails, handle_error says so.
    @event.listens_for(engine, "commit")
    def _committing(conn: Connection) -> None:
        mark(conn, True)

    @event.listens_for(engine, "rollback")
    def _rolling_back(conn: Connection) -> None:
        mark(conn, True)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        mark(context.connection, False)

    @event.listens_for(engine, "reset")
    def _returned(dbapi_connection: Any, record: Any, state: Any) -> None:
        if state.transaction_was_reset or not state.asyncio_safe:
            return  # the Connection has just rolled back itself / nothing may be sent
        if record is not None and record.info.pop(TRANSACTION_ENDED, False):
            return
        dbapi_connection.rollback()


# --- MySQL / MariaDB session limits ----------------------------------------------------

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


def _reset_session_limits(engine: Engine) -> None:
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


# Idle timeouts that drop a connection are minutes long (a NAT gateway's 350 s, RDS
# Proxy's 30 min by default); a stream invoking Lambda every few seconds must not pay a
# round trip per batch to guard against them.
IDLE_PING_S = 300.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle for minutes, long enough
    for an idle timeout (server, proxy, NAT) to have dropped it, while one used seconds
    ago almost never is dead. SQLAlchemy's pool_pre_ping pays a round trip on every
    checkout; a dead connection that slips through (a server restart, a failover) fails
    its batch's first statement, is invalidated, and the retry gets a new one."""

    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["cdc_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("cdc_idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except Exception as exc:
            # The pool discards this connection and checks out a new one.
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def _fix_sqlite_transactions(engine: Engine) -> None:
    """pysqlite opens transactions lazily and breaks SAVEPOINT; take control of BEGIN
    (as SQLAlchemy's docs advise) and take the write lock up front, so two writers wait
    on each other instead of failing to upgrade a read lock."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
