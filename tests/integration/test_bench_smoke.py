"""The benchmark suite still runs: `bench/run.py --smoke` against the test databases.

Benchmarks are not tests: this checks that the suite exits 0 (every contender applied
every batch, and all reached the same final state) and prints its tables, never a
timing (issues 4 and 14).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.databases import DATABASES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_bench_smoke_runs_and_prints_its_tables(postgres_url: str) -> None:
    # GIVEN the test PostgreSQL, SQLite, and MariaDB where CI has one
    mysql_url = os.environ.get("CDC_TEST_MYSQL_URL") if "mysql" in DATABASES else None
    databases = ["postgresql", "sqlite", *(["mariadb"] if mysql_url else [])]
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"]
    command += ["--database-url", postgres_url, "--databases", ",".join(databases)]
    if mysql_url:
        command += ["--mysql-url", mysql_url]
    # WHEN the suite runs at smoke size
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    # THEN it succeeds and prints a table per database, the network line and the targets
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    headings = ["POSTGRESQL, DIRECT", "SQLITE", "DECODING", "IMPORT TIME", "PEAK RSS", "TARGETS"]
    headings += ["MARIADB"] if mysql_url else []
    for heading in headings:
        assert heading in result.stdout, f"{heading} missing from:\n{result.stdout}"
    assert "cdc / COPY floor" in result.stdout
    assert "cdc / executemany floor" in result.stdout
    assert "0 keys differ" in result.stdout
    assert "PROBLEM" not in result.stdout
