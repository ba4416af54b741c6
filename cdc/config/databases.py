"""What the configuration knows of each database before it connects: the facts a
backend (cdc/sql/backends) states about itself, as plain data.

cdc.config sits below cdc.sql in the layering (docs/architecture.md), so it cannot ask
the backends; instead the backend registry (cdc/sql/backends/registry.py) fills this
table when the sql layer is imported, and `load_settings` reads it. Nothing here names
a particular database: a new backend states its facts in its own module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DatabaseFacts:
    """One backend, as the configuration sees it (see cdc.sql.backends.base.Backend,
    whose class attributes of the same names these are)."""

    name: str  # the backend's name: postgresql, mysql, sqlite
    label: str  # for people: PostgreSQL, MySQL/MariaDB, SQLite
    names: tuple[str, ...]  # the SQLAlchemy backend names it serves (mysql, mariadb)
    driver: str  # the SQLAlchemy driver name cdc uses (postgresql+psycopg)
    url_drivers: Mapping[str, str]  # a URL scheme users write → SQLAlchemy's driver name
    supports_schemas: bool
    max_identifier_bytes: int
    network: bool  # reached over the network: TLS and RDS IAM authentication apply
    system_ca: bool  # sslrootcert=system (the system's CA store) is understood


_FACTS: dict[str, DatabaseFacts] = {}  # by every SQLAlchemy backend name served
_ORDER: list[DatabaseFacts] = []


def register(facts: DatabaseFacts) -> None:
    """Called by the backend registry, once per backend."""
    _ORDER[:] = [f for f in _ORDER if f.name != facts.name] + [facts]
    for name in facts.names:
        _FACTS[name] = facts


def registered() -> list[DatabaseFacts]:
    """Every registered backend, in registration order."""
    _require_backends()
    return list(_ORDER)


def facts_for(backend_name: str) -> DatabaseFacts | None:
    """The backend serving SQLAlchemy backend name `backend_name`, if any."""
    _require_backends()
    return _FACTS.get(backend_name)


def url_drivers() -> dict[str, str]:
    """Every backend's URL schemes → SQLAlchemy driver names."""
    return {scheme: d for f in registered() for scheme, d in f.url_drivers.items()}


def listing(words: list[str], last: str = "and") -> str:
    """`a, b and c`."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def _require_backends() -> None:
    if not _FACTS:  # a programming error: the entry point never loaded the sql layer
        raise RuntimeError(
            "no database backends registered: import cdc.sql (cdc/sql/backends/registry.py)"
        )
