"""The benchmark suite still runs: `bench/run.py --smoke` against the test database.

Benchmarks are not tests: this checks that the suite exits 0 and prints its table,
never a timing (issue 4).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
def test_bench_smoke_runs_and_prints_its_table(postgres_url: str) -> None:
    # GIVEN the test PostgreSQL; WHEN the suite runs at smoke size
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--database-url", postgres_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # THEN it succeeds and prints every section of its table, targets included
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for heading in ("THROUGHPUT", "DECODING", "IMPORT TIME", "PEAK RSS", "TARGETS"):
        assert heading in result.stdout, f"{heading} missing from:\n{result.stdout}"
    assert "handler / naive" in result.stdout
    assert "PROBLEM" not in result.stdout
