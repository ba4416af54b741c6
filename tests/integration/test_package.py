"""The Lambda package: deploy/package.py builds a zip (wheels from PyPI for the target
platform), and the handler runs from it unpacked into an empty directory, with nothing
else on sys.path (no site-packages, no boto3), against PostgreSQL.

The zip is built for this machine's architecture and Python, so it can run here; the
wheels are kept in a wheelhouse in the temporary directory, so repeated runs do not
download them again."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cdc.core.versions import sequence_of

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "deploy" / "package.py"
EVENT = ROOT / "tests" / "events" / "stream-sample-devguide.json"
ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[
    platform.machine().lower()
]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
WHEELHOUSE = Path(tempfile.gettempdir()) / f"cdc-test-wheelhouse-{ARCH}"

# Runs in `python -I -S`: no site-packages, no user site, no PYTHON* variables, not even
# the current directory; the unpacked package is the only thing added to sys.path, as
# /var/task is in Lambda (minus the runtime's boto3, which the handler must not need).
RUN_HANDLER = """
import json, os, sys
task = os.environ["TASK"]
sys.path.insert(0, task)
from cdc.app.handler import handler

class Context:
    def get_remaining_time_in_millis(self):
        return 60_000

with open(os.environ["EVENT"]) as f:
    response = handler(json.load(f), Context())
try:
    import boto3
    boto3_found = True
except ModuleNotFoundError:
    boto3_found = False
import psycopg
print(json.dumps({
    "response": response,
    # Every module loaded comes from the package or the standard library.
    "outside": sorted(
        module.__file__ for module in list(sys.modules.values())
        if getattr(module, "__file__", None)
        and not module.__file__.startswith(task)
        and (not module.__file__.startswith(sys.base_prefix) or "site-packages" in module.__file__)
    ),
    "sqlalchemy": sys.modules["sqlalchemy"].__file__,
    "site_packages": [p for p in sys.path if "site-packages" in p],
    "boto3_imported": "boto3" in sys.modules or "botocore" in sys.modules,
    "boto3_found": boto3_found,
    "psycopg_impl": psycopg.pq.__impl__,
}))
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("dist") / f"cdc-lambda-{ARCH}.zip"
    command = [
        sys.executable, str(PACKAGE), "--arch", ARCH, "--python", PYTHON,
        "--out", str(out), "--wheelhouse", str(WHEELHOUSE),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    return out, run.stdout


def test_the_zip_holds_the_package_and_its_migrations_but_not_boto3(package):
    out, report = package
    names = zipfile.ZipFile(out).namelist()
    assert "cdc/handler.py" in names
    assert "cdc/migrations/env.py" in names
    assert any(n.startswith("cdc/migrations/versions/") and n.endswith(".py") for n in names)
    assert any(n.startswith("psycopg_binary/") for n in names)  # libpq: Lambda has none
    assert not any(n.split("/")[0] in ("boto3", "botocore", "s3transfer", "bin") for n in names)
    # Bytecode for the target Python only, compiled at build time (/var/task is
    # read-only: Lambda cannot cache what it compiles).
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    pycs = [n for n in names if n.endswith(".pyc")]
    assert "cdc/__pycache__/handler." + tag + ".pyc" in names
    assert all(tag in n for n in pycs)
    # The sizes are reported, and the limits checked.
    assert "MB zipped" in report
    assert "MB unzipped" in report
    assert out.stat().st_size < 50 * 1024 * 1024


@pytest.mark.postgres
def test_the_handler_runs_from_the_unpacked_zip_alone(
    package, tmp_path: Path, postgres_url: str, pg_engine: Engine, pg_schema: str
):
    out, _ = package
    task = tmp_path / "task"
    task.mkdir()
    with zipfile.ZipFile(out) as archive:
        archive.extractall(task)

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TASK": str(task),
        "EVENT": str(EVENT),
        "CDC_DATABASE_URL": postgres_url,
        "CDC_SCHEMA": pg_schema,
    }
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUN_HANDLER],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["response"] == {"batchItemFailures": []}
    assert result["sqlalchemy"].startswith(str(task))
    assert result["outside"] == []  # nothing came from anywhere but the package
    assert result["site_packages"] == []
    assert result["boto3_imported"] is False
    assert result["boto3_found"] is False  # the handler never needed it
    assert result["psycopg_impl"] == "binary"

    with pg_engine.connect() as conn:
        table = f'"{pg_schema}".example_table_with_stream'
        rows = conn.execute(text(f"select id, item, _cdc_seq, _cdc_deleted from {table}")).all()
    assert [(int(r.id), r.item, sequence_of(int(r._cdc_seq)), r._cdc_deleted) for r in rows] == [
        (101, {"Id": 101, "Message": "This item has changed"}, 222, False)
    ]
