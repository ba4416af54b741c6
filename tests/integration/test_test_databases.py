"""CDC_TEST_DATABASES chooses the databases of every test that runs on several (README,
Test), among those cdc's backend registry lists: on a machine without MySQL,
`CDC_TEST_DATABASES=postgresql` must not collect a MySQL case, and `mysql` no
PostgreSQL-parametrised one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cdc.sql.backends.registry import MODULES as REGISTERED_MODULES
from tests.databases import REGISTERED, selected_databases

ROOT = Path(__file__).resolve().parents[2]
# The modules whose tests are parametrised over database servers.
MODULES = [
    "tests/integration/test_backend_contract.py",
    "tests/integration/test_typed.py",
    "tests/integration/test_hard_deletes.py",
    "tests/integration/test_lazy_values.py",
    "tests/integration/test_purge.py",
    "tests/integration/test_dead_letters.py",
]


def collected(selection: str) -> list[str]:
    env = {**os.environ, "CDC_TEST_DATABASES": selection}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *MODULES,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def parameters(node_id: str) -> set[str]:
    match = re.search(r"\[(.*)\]$", node_id)
    return set(match.group(1).split("-")) if match else set()


@pytest.mark.parametrize("selection", REGISTERED)
def test_only_the_selected_databases_are_collected(selection: str) -> None:
    # GIVEN CDC_TEST_DATABASES naming one backend
    # WHEN the cross-database tests are collected
    ids = collected(selection)
    # THEN no case is parametrised with another one, and the selected one has cases
    others = set(REGISTERED) - {selection}
    assert [i for i in ids if others & parameters(i)] == []
    assert any(selection in parameters(i) for i in ids)


def test_every_registered_backend_runs_the_contract_by_default() -> None:
    # GIVEN no CDC_TEST_DATABASES; WHEN the backend contract is collected
    ids = [i for i in collected("") if "test_backend_contract" in i]
    # THEN each backend of the registry has its cases, and nothing else does
    assert list(REGISTERED_MODULES) == REGISTERED
    found = {p for i in ids for p in parameters(i) if p in REGISTERED}
    assert found == set(REGISTERED)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ["postgresql", "mysql", "sqlite"]),
        ("", ["postgresql", "mysql", "sqlite"]),
        ("postgresql", ["postgresql"]),
        (" MariaDB ", ["mysql"]),
        ("mysql,postgres,mariadb", ["mysql", "postgresql"]),
        ("postgresql,sqlite", ["postgresql", "sqlite"]),
    ],
)
def test_selection_names(value: str | None, expected: list[str]) -> None:
    assert selected_databases(value) == expected


@pytest.mark.parametrize("value", ["oracle", "postgresql,duckdb", ","])
def test_an_unknown_selection_is_a_usage_error(value: str) -> None:
    with pytest.raises(pytest.UsageError, match="CDC_TEST_DATABASES"):
        selected_databases(value)
