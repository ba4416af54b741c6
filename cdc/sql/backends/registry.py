"""The databases cdc supports, by name: one module of this package each.

A backend module defines one `Backend` subclass as `BACKEND` (cdc/sql/backends/base.py:
its capabilities and hooks). Listing its module name in `MODULES` is all it takes for the
rest of cdc to use it: engines, credentials, error classification, column types, the
configuration (through cdc.config.databases, filled here) and the tests' database
matrix (tests/conftest.py) all ask this registry.

The modules are imported on first use, when `cdc.sql` is imported (cdc/sql/__init__.py),
so modules they import may import this one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cdc.config import databases

if TYPE_CHECKING:
    from cdc.sql.backends.base import Backend

# The backends, in the order messages and the tests list them.
MODULES = ("postgresql", "mysql", "sqlite")

_BY_NAME: dict[str, type[Backend]] = {}  # every SQLAlchemy backend name served
_ORDER: list[type[Backend]] = []


def load() -> None:
    """Import every backend module and register its backend (once)."""
    if _ORDER:
        return
    for module in MODULES:
        register(importlib.import_module(f"cdc.sql.backends.{module}").BACKEND)


def register(cls: type[Backend]) -> type[Backend]:
    if cls not in _ORDER:
        _ORDER.append(cls)
    for name in (cls.name, *cls.names):
        _BY_NAME[name] = cls
    databases.register(cls.facts())
    return cls


def backends() -> list[type[Backend]]:
    """Every registered backend, in `MODULES` order."""
    load()
    return list(_ORDER)


def backend_class(name: str) -> type[Backend]:
    """The backend serving `name`: SQLAlchemy's name for the database
    (`engine.dialect.name`, `url.get_backend_name()`) or the backend's own."""
    try:
        return _BY_NAME[name]
    except KeyError:
        load()
        if name in _BY_NAME:
            return _BY_NAME[name]
        supported = ", ".join(sorted(_BY_NAME))
        raise ValueError(f"unsupported database {name!r}; cdc supports {supported}") from None


def backend_for(name: str) -> Backend:
    """A new backend object for `name` (see `backend_class`); it caches the statements
    it builds, so keep it as long as the engine."""
    return backend_class(name)()


def backend_of_error(error: BaseException) -> type[Backend] | None:
    """The backend whose driver raised `error`, by the exception's module."""
    module = type(error).__module__
    for cls in backends():
        if module.startswith(cls.driver_modules):
            return cls
    return None


__all__ = ["MODULES", "backend_class", "backend_for", "backend_of_error", "backends", "register"]
