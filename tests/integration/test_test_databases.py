"""CDC_TEST_DATABASES chooses the database servers of every test that runs on several
(README, Test): on a machine without MySQL, `CDC_TEST_DATABASES=postgresql` must not
collect a MySQL case, and `mysql` no PostgreSQL-parametrised one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import selected_databases

ROOT = Path(__file__).resolve().parents[2]
# The modules whose tests are parametrised over database servers.
MODULES = [
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


@pytest.mark.parametrize(
    ("selection", "absent", "present"),
    [("postgresql", "mysql", "postgresql"), ("mysql", "postgresql", "mysql")],
)
def test_only_the_selected_databases_are_collected(
    selection: str, absent: str, present: str
) -> None:
    # GIVEN CDC_TEST_DATABASES naming one server
    # WHEN the cross-database tests are collected
    ids = collected(selection)
    # THEN no case is parametrised with the other one, and the selected one has cases
    assert [i for i in ids if absent in parameters(i)] == []
    assert any(present in parameters(i) for i in ids)
    assert any("sqlite" in parameters(i) for i in ids)  # needs no server: always runs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ["postgresql", "mysql"]),
        ("", ["postgresql", "mysql"]),
        ("postgresql", ["postgresql"]),
        (" MariaDB ", ["mysql"]),
        ("mysql,postgres,mariadb", ["mysql", "postgresql"]),
    ],
)
def test_selection_names(value: str | None, expected: list[str]) -> None:
    assert selected_databases(value) == expected


@pytest.mark.parametrize("value", ["oracle", "postgresql,sqlite", ","])
def test_an_unknown_selection_is_a_usage_error(value: str) -> None:
    with pytest.raises(pytest.UsageError, match="CDC_TEST_DATABASES"):
        selected_databases(value)
