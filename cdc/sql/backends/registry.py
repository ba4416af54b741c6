"""One small class per database behind one interface, chosen by the engine's name.

A dialect builds SQLAlchemy Core statements (the guarded upsert, the merge of a
bookkeeping row) and knows its identifier limit and column types. It holds no
connection: the replicator (cdc/sql/writer.py) executes what it builds.
"""

from __future__ import annotations

from cdc.sql.backends.base import Dialect, Incoming
from cdc.sql.backends.postgresql import PostgresDialect
from cdc.sql.backends.sqlite import SqliteDialect

_REGISTRY: dict[str, type[Dialect]] = {
    "postgresql": PostgresDialect,
    "sqlite": SqliteDialect,
}


def register(cls: type[Dialect]) -> type[Dialect]:
    for name in cls.names:
        _REGISTRY[name] = cls
    return cls


def dialect_for(name: str) -> Dialect:
    """The dialect for a SQLAlchemy dialect name (`engine.dialect.name`)."""
    if name in ("mysql", "mariadb") and name not in _REGISTRY:
        from cdc.sql.backends.mysql import MySQLDialect

        register(MySQLDialect)
    try:
        return _REGISTRY[name]()
    except KeyError:
        supported = ", ".join(sorted({*_REGISTRY, "mysql", "mariadb"}))
        raise ValueError(f"unsupported database {name!r}; cdc supports {supported}") from None


__all__ = ["Dialect", "Incoming", "dialect_for", "register"]
