"""Engines: created once per process (per warm Lambda container) and reused."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError

from cdc.core.errors import ConfigError
from cdc.sql.backends.registry import backend_class


def make_engine(
    url: URL, *, connect_args: Mapping[str, Any] | None = None, **overrides: Any
) -> Engine:
    """An engine for `url`; `connect_args` add to (and override) the backend's defaults
    (Backend.connect_defaults), `overrides` to its `create_engine` options."""
    backend = backend_class(url.get_backend_name())
    kwargs: dict[str, Any] = backend.engine_options()
    kwargs["connect_args"] = {**backend.connect_defaults(), **(connect_args or {})}
    kwargs.update(overrides)
    try:
        engine = create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        hint = f" ({backend.install_hint})" if backend.install_hint else ""
        raise ConfigError(
            f"the database driver for {url.drivername!r} is not installed: {exc.name}{hint}"
        ) from None
    _ping_when_idle(engine)
    backend.prepare_engine(engine, kwargs)
    return engine


# conn.info key: the pooled connection's last command through SQLAlchemy ended its
# transaction (COMMIT or ROLLBACK), and nothing has run on it since.
TRANSACTION_ENDED = "cdc_transaction_ended"


def rollback_on_return_unless_ended(engine: Engine) -> None:
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
