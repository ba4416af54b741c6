"""The benchmark suite of issue 4, in one command:

    python bench/run.py [--quick | --smoke] [--database-url URL] [--json FILE]

It applies the same generated batches with the project's handler, a naive per-record
baseline and the COPY floor (see bench/baselines.py), then measures decoding, the import
time of `cdc.handler` and the peak RSS of a batch, profiles one handler batch, and
prints a table with the issue's targets marked met or missed. It never asserts a
timing: a missed target is a figure to read, not a failure. It exits non-zero only when
the benchmark itself is wrong (a method failed, or the methods disagree on the final
state of the replica).

It works in a schema of its own (`cdc_bench_…`), created at the start and dropped at
the end, in the database named by --database-url (default: $CDC_BENCH_DATABASE_URL or
postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hotspots, micro, report
from bench.baselines import (
    COPY_TABLE,
    NAIVE_TABLE,
    BenchFailure,
    BenchSchema,
    CopyFloor,
    HandlerMethod,
    Method,
    NaiveMethod,
    psycopg_conninfo,
)
from bench.report import Results, SizeFigures
from bench.workload import SequenceNumbers, Workload

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: tuple[int, ...]
    repeats: int
    import_runs: int
    decode_number: int
    decode_repeat: int
    breakdown_batches: int


MODES = {
    "full": Mode("full", (1_000, 10_000), 7, 9, 40, 15, 5),
    "quick": Mode("quick", (1_000, 10_000), 3, 5, 20, 5, 2),
    "smoke": Mode("smoke", (50, 100), 1, 1, 2, 1, 1),
}


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the run ----------------------------------------------------------------------------


def code_version() -> str:
    """The commit measured, and whether cdc/ had uncommitted changes (read-only git)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cdc"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{sha}" + (f" + {len(dirty)} uncommitted file(s) under cdc/" if dirty else "")


def machine_info(conninfo: str) -> dict[str, str]:
    import psycopg
    import sqlalchemy

    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "load_at_start": f"{os.getloadavg()[0]:.2f}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "postgresql": str(row[0]) if row else "?",
        "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__})",
        "sqlalchemy": sqlalchemy.__version__,
        "code": code_version(),
    }


def average_item_bytes(records: Sequence[dict[str, Any]]) -> float:
    from boto3.dynamodb.types import TypeDeserializer

    from bench.baselines import naive_json

    deserialize = TypeDeserializer().deserialize
    sizes = [
        len(naive_json({k: deserialize(v) for k, v in r["dynamodb"]["NewImage"].items()}))
        for r in records
    ]
    return sum(sizes) / len(sizes)


def throughput(
    methods: Sequence[Method], workloads: Sequence[Workload], repeats: int
) -> list[SizeFigures]:
    """Every method applies batch 0 of every size (warm-up, not timed), then batches
    1…repeats, in lockstep: run r of every size and method before run r+1, methods in a
    rotating order, so drifting machine load and table growth hit them all alike."""
    figures = [SizeFigures(w.size, {m.name: [] for m in methods}) for w in workloads]
    for run in range(repeats + 1):
        for workload, sizes in zip(workloads, figures, strict=True):
            batch = workload.batch(run)
            shift = run % len(methods)
            for method in [*methods[shift:], *methods[:shift]]:
                prepared = method.prepare(batch)
                gc.collect()  # every method starts from the same heap, outside the clock
                started = time.perf_counter()
                method.apply(prepared)
                elapsed = time.perf_counter() - started
                if run > 0:
                    sizes.seconds[method.name].append(elapsed)
        warm_up = " (warm-up)" if run == 0 else ""
        progress(f"  run {run}/{repeats} done{warm_up}")
    return figures


def run(args: argparse.Namespace, mode: Mode) -> Results:
    url = args.database_url
    conninfo = psycopg_conninfo(url)
    seq = SequenceNumbers()
    results = Results(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join(["python", "bench/run.py", *sys.argv[1:]]),
        mode=mode.name,
        repeats=mode.repeats,
        breakdown_batches=mode.breakdown_batches,
        machine=machine_info(conninfo),
        item_bytes=average_item_bytes(Workload(100, 1, SequenceNumbers()).batches(1)[1]),
    )
    schema_name = f"cdc_bench_{uuid.uuid4().hex[:10]}"
    progress(f"schema {schema_name}; mode {mode.name}")
    schema = BenchSchema(conninfo, schema_name)
    methods: list[Any] = []
    try:
        handler = HandlerMethod(url, schema_name)
        methods.append(handler)
        handler.warm_container()
        schema.clone_replica_tables()
        naive = NaiveMethod(conninfo, schema_name)
        methods.append(naive)
        copy = CopyFloor(conninfo, schema_name)
        methods.append(copy)

        progress("throughput: " + ", ".join(f"{size:,}" for size in mode.sizes) + " records")
        workloads = [
            Workload(size, 10_000_000 * (index + 1), seq) for index, size in enumerate(mode.sizes)
        ]
        results.sizes = throughput([handler, naive, copy], workloads, mode.repeats)

        for table in (NAIVE_TABLE, COPY_TABLE):
            rows, handler_rows, different = schema.differences(table)
            line = f"{table}: {rows:,} rows, handler's {handler_rows:,}, {different} keys differ"
            results.state_checks.append(line)
            if different or rows != handler_rows:
                results.problems.append(f"final states differ: {line}")

        if not args.no_profile:
            for index, size in enumerate(mode.sizes):
                progress(f"where the handler's time goes, {size:,}-record batches")
                base = 200_000_000 + index * 50_000_000
                batches = Workload(size, base, seq).batches(mode.breakdown_batches + 2)
                handler.apply(handler.prepare(batches[0]))
                timed = batches[1 : 1 + mode.breakdown_batches]
                try:
                    results.breakdowns.append(
                        hotspots.breakdown(
                            lambda b: handler.apply(handler.prepare(b)), timed, batches[-2]
                        )
                    )
                except Exception as exc:
                    results.notes.append(f"breakdown: {type(exc).__name__}: {exc}")
                if index == 0:
                    results.profile = hotspots.profile(
                        functools.partial(handler.apply, handler.prepare(batches[-1]))
                    )

        progress("decoding")
        sample = Workload(50, 1, SequenceNumbers()).batches(1)[1]
        images = [r["dynamodb"]["NewImage"] for r in sample]
        decode = micro.decode_timings(images, mode.decode_number, mode.decode_repeat)
        results.decode = decode
        results.notes.extend(decode.errors)

        progress("import time (fresh subprocesses)")
        results.imports = micro.import_timings(mode.import_runs, detail=mode.name != "smoke")

        for index, size in enumerate(mode.sizes):
            progress(f"peak RSS, {size:,}-record batch (fresh subprocess)")
            figures = micro.peak_memory(size, url, schema_name, 900_000_000 + index * 50_000_000)
            results.memory.append(figures)
            if figures.failures:
                results.problems.append(f"the memory probe's batch had {figures.failures} failures")
    except BenchFailure as exc:
        results.problems.append(str(exc))
    finally:
        for method in methods:
            method.close()
        if args.keep_schema:
            progress(f"kept schema {schema_name}")
        else:
            schema.drop()
    return results


# --- command line -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CDC_BENCH_DATABASE_URL") or DEFAULT_URL,
        help="PostgreSQL, as a SQLAlchemy URL (default: $CDC_BENCH_DATABASE_URL or %(default)s)",
    )
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="fewer repeats (3)")
    speed.add_argument("--smoke", action="store_true", help="tiny batches, one run: seconds")
    parser.add_argument("--sizes", help="batch sizes, comma-separated (default: 1000,10000)")
    parser.add_argument("--repeats", type=int, help="timed runs per size")
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the breakdown, replay and profile"
    )
    parser.add_argument("--keep-schema", action="store_true", help="do not drop the bench schema")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    args = parser.parse_args(argv)

    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.sizes:
        mode = Mode(**{**asdict(mode), "sizes": tuple(int(s) for s in args.sizes.split(","))})
    if args.repeats:
        mode = Mode(**{**asdict(mode), "repeats": args.repeats})
    if any(size < 2 for size in mode.sizes) or mode.repeats < 1:
        parser.error("sizes must be ≥ 2 and repeats ≥ 1")

    results = run(args, mode)
    results.machine["load_at_end"] = f"{os.getloadavg()[0]:.2f}"
    print(report.render(results))
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=2, default=str))
    return 1 if results.problems else 0


if __name__ == "__main__":
    sys.exit(main())
