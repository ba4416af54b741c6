"""Settings as the `cdc` command sees them: one line and exit 2 for an invalid one, a
working run with every valid one (the settings themselves: tests/unit/test_config.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.settings_cases import CA_BUNDLE, EXAMPLE_MAPPING, Bad, bad_cases
from tests.unit.test_config import SAMPLE_EVENT, env_with


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`cdc ARGS` as a separate process, with only `env` of cdc's variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CDC_", "POWERTOOLS_"))}
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("case", bad_cases())
def test_the_cli_answers_an_invalid_setting_with_one_line_and_exit_2(
    case: Bad, tmp_path: Path
) -> None:
    # GIVEN one setting with a value cdc does not accept
    # WHEN any command runs (here: replaying the AWS documentation's sample)
    proc = run_cli(env_with(case.env), tmp_path, "replay", str(SAMPLE_EVENT))
    # THEN it exits 2 with one line naming the variable and what it accepts, no traceback
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cdc: error: ")
    assert case.variable in lines[0] and case.accepts in lines[0]
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written, no SQLite file made


def test_the_cli_runs_with_every_valid_setting(
    pg_engine: Any, pg_schema: str, tmp_path: Path
) -> None:
    # GIVEN every setting that applies to a plain PostgreSQL URL set to a valid value,
    # in the spellings users write
    env = {
        "CDC_DATABASE_URL": pg_engine.url.render_as_string(hide_password=False),
        "CDC_SCHEMA": pg_schema,
        "CDC_CONFIG": str(EXAMPLE_MAPPING),
        "CDC_DATABASE_IAM_AUTH": "No",
        "CDC_DATABASE_SSLMODE": "Prefer",
        "CDC_DATABASE_SSLROOTCERT": str(CA_BUNDLE),
        "CDC_DATABASE_DISABLE_PREPARED": "YES",
        "CDC_LOG_LEVEL": "debug",
        "CDC_METRICS": "OFF",
        "CDC_METRICS_NAMESPACE": "Shop/Replication",
        "POWERTOOLS_SERVICE_NAME": "orders-replica",
    }
    # WHEN a command runs
    proc = run_cli(env, tmp_path, "replay", str(SAMPLE_EVENT))
    # THEN it works
    assert proc.returncode == 0, proc.stderr
    assert "1 applied" in proc.stdout
