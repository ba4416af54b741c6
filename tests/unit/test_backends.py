"""The backend registry (docs/architecture.md §8): each database is one backend that
states its capabilities, and no code outside cdc/sql/backends names a database, so a
new backend needs no change elsewhere. No database needed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cdc.config import databases, parse_database_url
from cdc.core.errors import ConfigError
from cdc.sql.backends.registry import MODULES, backend_class, backends
from cdc.sql.secrets import url_from_secret

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = backends()


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_every_backend_states_its_capabilities(backend):
    # GIVEN a registered backend
    # THEN it is found by each of its names, and says what the configuration needs
    assert backend.__module__ == f"cdc.sql.backends.{backend.name}"
    assert backend.name in MODULES and backend.label and backend.names and backend.driver
    assert backend.driver_modules and backend.url_drivers
    for name in (backend.name, *backend.names):
        assert backend_class(name) is backend
        assert databases.facts_for(name) == backend.facts()
    assert backend.max_identifier_bytes >= 30
    # AND every URL scheme it claims becomes one of its own drivers
    for scheme, driver in backend.url_drivers.items():
        url = parse_database_url(
            f"{scheme}:///x" if not backend.network else f"{scheme}://h/x", "t"
        )
        assert url.drivername == driver
        assert backend_class(url.get_backend_name()) is backend
    # AND so does every RDS secret engine
    for engine, driver in backend.secret_engines.items():
        secret = {"username": "u", "password": "p", "host": "h", "engine": engine}
        url = url_from_secret(secret)
        assert url.drivername == driver and backend_class(url.get_backend_name()) is backend
    # AND at most one backend is what a secret without `engine` names
    assert sum(b.secret_default for b in BACKENDS) == 1


def test_no_two_backends_claim_a_name():
    claimed = [n for b in BACKENDS for n in {b.name, *b.names}]
    schemes = [s for b in BACKENDS for s in b.url_drivers]
    engines = [e for b in BACKENDS for e in b.secret_engines]
    for names in (claimed, schemes, engines):
        assert len(names) == len(set(names)), names


def test_an_unknown_database_lists_the_registered_ones():
    with pytest.raises(ConfigError) as info:
        parse_database_url("oracle://h/x", "CDC_DATABASE_URL")
    for backend in BACKENDS:
        assert backend.name in str(info.value)
    with pytest.raises(ValueError, match="unsupported database 'oracle'"):
        backend_class("oracle")


# Where naming a database is the point: the backends themselves, and the historical
# re-exports and revisions that migrations refer to by name.
_ALLOWED = ("cdc/sql/backends/", "cdc/types.py", "migrations/versions/")


def _names_a_database(node: ast.AST, names: set[str]) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names


def test_no_code_outside_the_backends_names_a_database():
    # GIVEN every name a backend answers to (SQLAlchemy's, URL schemes, RDS engines,
    # driver modules)
    names = {
        n
        for b in BACKENDS
        for n in (b.name, *b.names, *b.url_drivers, *b.secret_engines, *b.driver_modules)
    }
    # WHEN the code outside cdc/sql/backends is read
    found = []
    for path in [*ROOT.joinpath("cdc").rglob("*.py"), ROOT / "migrations" / "env.py"]:
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(_ALLOWED):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [
            f"{relative}:{node.lineno}: {node.value!r}"  # type: ignore[attr-defined]
            for node in ast.walk(tree)
            if _names_a_database(node, names)
        ]
    # THEN no string there is a database's name: it asks the registry instead
    assert found == []
