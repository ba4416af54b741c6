"""Micro-benchmarks: decoding one NewImage, importing the handler, peak memory.

The import and memory figures come from fresh subprocesses (a warm process has
everything imported and its peak RSS already reached); the decoding figures are the
best of several `timeit` repeats over a set of different images.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# --- decoding ---------------------------------------------------------------------------


@dataclass
class DecodeFigures:
    """µs per image; None when cdc's API is not there (renamed?)."""

    boto3_us: float  # TypeDeserializer, decoding alone
    boto3_json_us: float  # TypeDeserializer + json.dumps (what the naive baseline does)
    cdc_decode_us: float | None  # image_to_plain alone
    cdc_decode_encode_us: float | None  # image_to_json: what the handler does (document)
    errors: list[str] = field(default_factory=list)


def decode_timings(images: list[dict[str, Any]], number: int, repeat: int) -> DecodeFigures:
    """Each candidate decodes every image `number` times per repeat; the repeats go
    round-robin over the candidates, so a burst of load elsewhere hits them alike, and
    the best repeat counts (timeit's advice: the others measure interference)."""
    from boto3.dynamodb.types import TypeDeserializer

    from bench.baselines import naive_json

    deserialize = TypeDeserializer().deserialize
    as_parsed = [_binary_as_bytes(image) for image in images]

    def boto3_decode() -> None:
        for image in as_parsed:
            {k: deserialize(v) for k, v in image.items()}

    def boto3_decode_json() -> None:
        for image in as_parsed:
            naive_json({k: deserialize(v) for k, v in image.items()})

    candidates: dict[str, Callable[[], object]] = {
        "boto3": boto3_decode,
        "boto3_json": boto3_decode_json,
    }
    errors: list[str] = []
    try:
        from cdc.core.decode import image_to_plain
        from cdc.core.jsontext import image_to_json

        def cdc_decode() -> None:
            for image in images:
                image_to_plain(image, "NewImage")

        def cdc_decode_encode() -> None:
            for image in images:
                image_to_json(image, "NewImage")

        candidates["cdc"] = cdc_decode
        candidates["cdc_json"] = cdc_decode_encode
    except Exception as exc:
        errors.append(f"cdc.decode: {type(exc).__name__}: {exc}")

    timers = {name: timeit.Timer(fn) for name, fn in candidates.items()}
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(number))
    us = {name: seconds / (number * len(images)) * 1e6 for name, seconds in best.items()}
    return DecodeFigures(
        boto3_us=us["boto3"],
        boto3_json_us=us["boto3_json"],
        cdc_decode_us=us.get("cdc"),
        cdc_decode_encode_us=us.get("cdc_json"),
        errors=errors,
    )


def _binary_as_bytes(value: Any) -> Any:
    """boto3's TypeDeserializer takes B and BS values as bytes (botocore has decoded
    the base64 by then); a stream event holds base64 text. Decoded here, outside the
    clock, so boto3 is timed on what it is made for."""
    if isinstance(value, dict):
        if len(value) == 1 and "B" in value:
            return {"B": base64.b64decode(value["B"])}
        if len(value) == 1 and "BS" in value:
            return {"BS": [base64.b64decode(v) for v in value["BS"]]}
        return {k: _binary_as_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_binary_as_bytes(v) for v in value]
    return value


# --- import time ------------------------------------------------------------------------

# Only builtin modules (sys, time) are touched before the clock starts.
_IMPORT_PROBE = """\
import sys, time
started = time.perf_counter()
import {modules}
elapsed = time.perf_counter() - started
print(elapsed, int("boto3" in sys.modules), int("botocore" in sys.modules), len(sys.modules))
"""


@dataclass
class ImportFigures:
    cdc_s: float  # median wall time of `import cdc.handler`
    baseline_s: float  # median wall time of `import sqlalchemy, psycopg`
    runs: int
    boto3_imported: bool
    botocore_imported: bool
    cdc_modules: int
    baseline_modules: int
    heaviest: list[tuple[str, float]] = field(default_factory=list)  # beyond the baseline


def _probe_env(pycache: str) -> dict[str, str]:
    """Compiled bytecode cached (in a directory of our own, so nothing is written into
    the source tree), as in a deployed package: the same for both imports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def _run_probe(modules: str, env: dict[str, str]) -> tuple[float, bool, bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE.format(modules=modules)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), out[1] == "1", out[2] == "1", int(out[3])


def import_timings(runs: int, detail: bool) -> ImportFigures:
    with tempfile.TemporaryDirectory(prefix="cdc-bench-pycache-") as pycache:
        env = _probe_env(pycache)
        for modules in ("cdc.handler", "sqlalchemy, psycopg"):  # fill the bytecode cache
            _run_probe(modules, env)
        cdc_times: list[float] = []
        base_times: list[float] = []
        boto3 = botocore = False
        cdc_modules = base_modules = 0
        for _ in range(runs):  # alternate, so drifting machine load hits both alike
            elapsed, boto3, botocore, cdc_modules = _run_probe("cdc.handler", env)
            cdc_times.append(elapsed)
            elapsed, _, _, base_modules = _run_probe("sqlalchemy, psycopg", env)
            base_times.append(elapsed)
        heaviest = _heaviest_imports(env) if detail else []
    return ImportFigures(
        cdc_s=statistics.median(cdc_times),
        baseline_s=statistics.median(base_times),
        runs=runs,
        boto3_imported=boto3,
        botocore_imported=botocore,
        cdc_modules=cdc_modules,
        baseline_modules=base_modules,
        heaviest=heaviest,
    )


def _heaviest_imports(env: dict[str, str], top: int = 8) -> list[tuple[str, float]]:
    """Top-level packages `import cdc.handler` loads beyond sqlalchemy and psycopg, by
    the sum of their modules' own import time (`python -X importtime`)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sqlalchemy, psycopg, cdc.handler"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    # Children are printed before their parent; `import cdc.handler` starts after the
    # last line of the top-level `psycopg` entry.
    start = 0
    for i, line in enumerate(lines):
        if line.split("|")[-1].rstrip() == " psycopg":
            start = i + 1
    totals: dict[str, float] = {}
    for line in lines[start:]:
        parts = line.split("|")
        try:
            self_us = float(parts[0].split(":")[1])
        except (IndexError, ValueError):
            continue
        package = parts[2].strip().split(".")[0]
        totals[package] = totals.get(package, 0.0) + self_us / 1e6
    heaviest = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [(name, seconds) for name, seconds in heaviest if seconds >= 0.001]


# --- peak memory ------------------------------------------------------------------------


@dataclass
class MemoryFigures:
    size: int
    workload: str
    after_imports_mb: float
    after_first_invocation_mb: float
    after_event_mb: float
    peak_mb: float
    failures: int
    boto3_imported: bool

    @property
    def batch_mb(self) -> float:
        """What the batch itself added to the peak (event included)."""
        return self.peak_mb - self.after_first_invocation_mb


def peak_memory(
    size: int, database_url: str, schema: str, base: int, workload: str
) -> MemoryFigures:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.rss_probe",
            "--size",
            str(size),
            "--base",
            str(base),
            "--database-url",
            database_url,
            "--schema",
            schema,
            "--workload",
            workload,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the memory probe failed:\n{result.stderr[-2000:]}")
    values = json.loads(result.stdout.strip().splitlines()[-1])
    return MemoryFigures(**values)
