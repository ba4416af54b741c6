"""The benchmark suite (issues 4 and 14), in one command:

    python bench/run.py [--quick | --smoke] [--json FILE] [options]

For each database (PostgreSQL, MariaDB, SQLite) it applies the same generated batches
(100, 1,000 and 10,000 records) with cdc's Lambda handler and with that database's own
floor (pre-encoded rows, nothing but the database's bulk path), interleaved, and on
PostgreSQL also through a latency proxy at RTT 0 and 1 ms (round trips per batch
counted) and with a Powertools `BatchProcessor` peer; then it measures decoding, the
import time of `cdc.handler` and the peak RSS of a batch, profiles one handler batch per
database, and prints a table per database with the issue's targets marked met or
missed. It never asserts a timing: a missed target is a figure to read, not a failure.
It exits non-zero only when the benchmark itself is wrong (a contender failed a batch,
or the contenders disagree on the final state of the replica).

Everything happens in schemas of its own (`cdc_bench_…`; MariaDB databases, SQLite
files), created at the start and dropped at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hotspots, micro, report
from bench.baselines import (
    FLOOR_TABLE,
    NAIVE_TABLE,
    PEER_TABLE,
    BenchFailure,
    CopyFloor,
    Counter,
    HandlerMethod,
    Method,
    NaiveMethod,
    PeerMethod,
    count_mysql_commands,
    peers_python,
)
from bench.databases import Database, MariaDB, Postgres, Sqlite, psycopg_conninfo, with_port
from bench.encode import differences, plain_json
from bench.report import Cell, PhaseResult, Results
from bench.workload import REPLICA_TABLE, WORKLOADS, SequenceNumbers, Workload, event

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


@dataclass(frozen=True)
class Mode:
    name: str
    sizes: tuple[int, ...]
    repeats: int
    import_runs: int
    decode_number: int
    decode_repeat: int
    breakdown_batches: int
    peer_max_size: int  # the per-record peer is slow: the largest size it runs at
    memory_sizes: tuple[int, ...]
    large_repeats: int | None = None  # timed runs at 10,000 records and more, if fewer

    def repeats_at(self, size: int) -> int:
        if size >= LARGE and self.large_repeats is not None:
            return min(self.repeats, self.large_repeats)
        return self.repeats


LARGE = 10_000
MODES = {
    "full": Mode("full", (100, 1_000, 10_000), 7, 9, 40, 15, 5, 10_000, (1_000, 10_000), 5),
    "quick": Mode("quick", (100, 1_000, 10_000), 3, 5, 10, 5, 2, 1_000, (1_000,), 2),
    "smoke": Mode("smoke", (20, 100), 1, 1, 2, 1, 1, 100, (100,)),
}
PROFILE_SIZE = 1_000  # the profile's batch size (the nearest one the mode has)
KEY_SPAN = 10_000_000  # the keys of each batch size: base, base + KEY_SPAN


_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:5.0f}s] {message}", file=sys.stderr, flush=True)


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


def machine_info() -> dict[str, str]:
    import psycopg
    import sqlalchemy

    info = {
        "load_at_start": f"{os.getloadavg()[0]:.2f}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__})",
        "sqlalchemy": sqlalchemy.__version__,
        "code": code_version(),
    }
    from contextlib import suppress
    from importlib.metadata import PackageNotFoundError, version

    with suppress(PackageNotFoundError):  # pymysql.__version__ is MySQLdb-compatible
        info["pymysql"] = version("PyMySQL")
    return info


def average_item_bytes(kind: str) -> float:
    records = Workload(200, 1, SequenceNumbers(), kind=kind).batch(0)
    sizes = [len(plain_json(r["dynamodb"]["NewImage"]).encode()) for r in records]
    return sum(sizes) / len(sizes)


@dataclass
class Contender:
    name: str  # "cdc", "floor", "powertools", "naive"
    method: Method
    table: tuple[str, str]  # (schema, table) it writes
    rtt_ms: float | None = None  # through the latency proxy at this RTT; None: direct
    max_size: int | None = None  # runs only at sizes up to this
    compare_with: tuple[str, str] | None = None  # the cdc table its final state must match
    compare_items: bool = True  # False: only keys and bookkeeping (a lossy JSON encoder)
    key_ranges: list[tuple[int, int]] | None = None  # the keys of the sizes it ran at
    counter: Counter | None = None  # round trips so far (None: not counted)
    set_rtt: Callable[[float], None] | None = None  # the proxy's delay, set before its turn

    def runs_at(self, size: int) -> bool:
        return self.max_size is None or size <= self.max_size


@dataclass
class Phase:
    """One database (and network) with its contenders; see `phases`."""

    key: str
    title: str
    database: Database
    workload: str
    rtts: tuple[float | None, ...] = (None,)
    peers: bool = False
    naive: bool = False
    counter: Counter | None = None
    set_rtt: Callable[[float], None] | None = None
    floor_label: str = "floor"
    notes: list[str] = field(default_factory=list)
    contenders: list[Contender] = field(default_factory=list)
    result: PhaseResult | None = None


def lockstep(
    contenders: Sequence[Contender], workloads: Sequence[Workload], repeats: Callable[[int], int]
) -> dict[int, list[Cell]]:
    """Every contender (of every database) applies batch 0 of every size (warm-up, not
    timed), then batches 1…repeats, in lockstep: run r of every size and contender
    before run r+1, contenders in a rotating order (ABCD…, BCDA…), so drifting machine
    load and table growth hit them all alike; each batch is made once and applied by
    all. `gc.collect()` before each, outside the clock. `repeats(size)`: timed runs at
    that size. Returns id(contender) → cells."""
    cells: dict[int, list[Cell]] = {id(c): [] for c in contenders}
    runs = max(repeats(w.size) for w in workloads)
    for run in range(runs + 1):
        for workload in workloads:
            if run > repeats(workload.size):
                continue
            batch = workload.batch(run)
            active = [c for c in contenders if c.runs_at(workload.size)]
            shift = run % len(active)
            for contender in [*active[shift:], *active[:shift]]:
                seconds, trips = timed_apply(contender, batch)
                if run == 0:
                    continue
                mine = cells[id(contender)]
                cell = next((c for c in mine if c.size == workload.size), None)
                if cell is None:
                    cell = Cell(contender.name, contender.rtt_ms, workload.size, [], [])
                    mine.append(cell)
                cell.seconds.append(seconds)
                if trips is not None:
                    cell.round_trips.append(trips)
            del batch
        progress(f"  run {run}/{runs} done" + (" (warm-up)" if run == 0 else ""))
    return cells


def timed_apply(contender: Contender, batch: list[dict[str, Any]]) -> tuple[float, int | None]:
    """(seconds, round trips) of one batch; what is not the contender's work (preparing
    its input, setting the proxy's delay, collecting garbage) happens before the clock."""
    prepared = contender.method.prepare(batch)
    if contender.set_rtt is not None and contender.rtt_ms is not None:
        contender.set_rtt(contender.rtt_ms)
    gc.collect()
    counter = contender.counter
    before = counter() if counter else 0
    started = time.perf_counter()
    own = contender.method.apply(prepared)
    elapsed = time.perf_counter() - started
    trips = (counter() - before) if counter else None
    return (own if own is not None else elapsed), trips


class Run:
    def __init__(self, args: argparse.Namespace, mode: Mode) -> None:
        self.args = args
        self.mode = mode
        self.run_id = uuid.uuid4().hex[:8]
        self.seq = SequenceNumbers()
        self.schemas: list[tuple[Database, str]] = []
        self.closers: list[Callable[[], None]] = []  # contenders, the proxy
        self.databases: list[Database] = []  # closed last: they drop the schemas
        self._schema_count = 0

    def schema(self, database: Database) -> str:
        self._schema_count += 1
        name = f"cdc_bench_{self.run_id}_{self._schema_count}"
        database.create(name)
        self.schemas.append((database, name))
        return name

    def cleanup(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception as exc:  # cleanup must go on
                progress(f"cleanup: {type(exc).__name__}: {exc}")
        self.closers.clear()
        for database, name in self.schemas:
            if self.args.keep_schema:
                progress(f"kept {database.label} schema {name}")
                continue
            try:
                database.drop(name)
            except Exception as exc:
                progress(f"cleanup: cannot drop {name}: {type(exc).__name__}: {exc}")
        for database in self.databases:
            database.close()
        self.databases.clear()

    def contenders(self, phase: Phase) -> list[Contender]:
        """cdc and the floor at each RTT (each cdc with a schema of its own, the floor's
        table a copy of cdc's), and the peers on direct PostgreSQL."""
        db = phase.database
        found: list[Contender] = []
        for rtt in phase.rtts:
            schema = self.schema(db)
            url, cdc_schema = db.cdc_target(schema)
            if rtt is not None:
                url = self.proxied_url
            handler = HandlerMethod(url, cdc_schema)
            self.closers.append(handler.close)
            handler.warm_container(phase.workload)
            db.empty(schema)
            found.append(Contender("cdc", handler, (schema, REPLICA_TABLE), rtt))
            db.clone(schema, FLOOR_TABLE)
            floor = (
                CopyFloor(psycopg_conninfo(url), schema, FLOOR_TABLE)
                if rtt is not None
                else db.floor(schema, FLOOR_TABLE)
            )
            self.closers.append(floor.close)
            cdc_table = (schema, REPLICA_TABLE)
            found.append(Contender("floor", floor, (schema, FLOOR_TABLE), rtt, None, cdc_table))
            if rtt is None and phase.naive and isinstance(db, Postgres):
                db.clone(schema, NAIVE_TABLE)
                naive = NaiveMethod(db.conninfo, schema, NAIVE_TABLE)
                self.closers.append(naive.close)
                found.append(Contender("naive", naive, (schema, NAIVE_TABLE), None))
            if rtt is None and phase.peers and isinstance(db, Postgres):
                peer = self.peer(db, schema, phase)
                if peer is not None:
                    found.append(peer)
        return found

    def peer(self, db: Postgres, schema: str, phase: Phase) -> Contender | None:
        python = peers_python()
        if python is None:
            phase.notes.append(
                "Powertools peer: n/a, no bench venv (python3 -m venv bench/.venv && "
                "bench/.venv/bin/pip install -r bench/requirements.txt)"
            )
            return None
        db.clone(schema, PEER_TABLE)
        try:
            peer = PeerMethod(python, db.url, schema, PEER_TABLE)
        except BenchFailure as exc:
            phase.notes.append(f"Powertools peer: n/a, {exc}")
            return None
        self.closers.append(peer.close)
        phase.notes.append(
            f"Powertools peer: {peer.versions}; one transaction per record, "
            f"at sizes up to {self.mode.peer_max_size:,}"
        )
        # Its JSON goes through float (as such code usually does): its items are not
        # compared, only that it applied every key's newest version.
        return Contender(
            "powertools",
            peer,
            (schema, PEER_TABLE),
            None,
            self.mode.peer_max_size,
            compare_with=(schema, REPLICA_TABLE),
            compare_items=False,
        )

    proxied_url: str = ""

    def prepare_phase(self, phase: Phase, results: Results) -> None:
        """Its schemas, contenders and warm-up calls; a failure here skips the phase."""
        progress(f"setting up: {phase.title}")
        phase.result = PhaseResult(
            key=phase.key,
            title=phase.title,
            database=phase.database.version(),
            workload=phase.workload,
            workload_text=WORKLOADS[phase.workload][1],
            item_bytes=average_item_bytes(phase.workload),
            floor_label=phase.floor_label,
        )
        results.phases.append(phase.result)
        phase.contenders = self.contenders(phase)
        for contender in phase.contenders:
            contender.counter = phase.counter
            contender.set_rtt = phase.set_rtt

    def measure(self, group: Sequence[Phase], results: Results) -> None:
        """The phases of one workload, in one lockstep; then, phase by phase, where
        cdc's time goes and the final-state check."""
        kind = group[0].workload
        progress(f"throughput, {kind} workload: " + ", ".join(p.title for p in group))
        contenders = [c for p in group for c in p.contenders]
        workloads = [
            Workload(size, KEY_SPAN * (i + 1), self.seq, kind=kind)
            for i, size in enumerate(self.mode.sizes)
        ]
        for contender in contenders:
            if contender.max_size is not None:
                contender.key_ranges = [
                    (w.base, w.base + KEY_SPAN) for w in workloads if contender.runs_at(w.size)
                ]
        cells = lockstep(contenders, workloads, self.mode.repeats_at)
        for phase in group:
            assert phase.result is not None
            phase.result.cells = [cell for c in phase.contenders for cell in cells[id(c)]]
            if phase.set_rtt is not None:
                phase.set_rtt(0.0)
        for phase in group:
            assert phase.result is not None
            try:
                if not self.args.no_profile:
                    self.probes(phase, phase.result, phase.contenders, workloads)
                self.check_states(phase, phase.result, phase.contenders)
            except BenchFailure as exc:
                results.problems.append(f"{phase.title}: {exc}")
            phase.result.notes.extend(phase.notes)

    def probes(
        self,
        phase: Phase,
        result: PhaseResult,
        contenders: Sequence[Contender],
        workloads: Sequence[Workload],
    ) -> None:
        """Where cdc's time goes, on extra batches of the size nearest 1,000: a
        breakdown (PostgreSQL, direct) and one batch under cProfile. The other
        contenders apply the same batches afterwards, untimed, so final states agree."""
        workload = min(workloads, key=lambda w: abs(w.size - PROFILE_SIZE))
        cdc = next(c for c in contenders if c.name == "cdc")
        handler = cdc.method
        assert isinstance(handler, HandlerMethod)
        others = [c for c in contenders if c is not cdc and c.runs_at(workload.size)]
        extra: list[list[dict[str, Any]]] = []
        if cdc.rtt_ms is None:
            progress(f"  {phase.title}: where cdc's time goes, {workload.size:,} records")
            timed = [workload.next_batch() for _ in range(self.mode.breakdown_batches)]
            # The replay probe replays a bulk statement with array parameters: PostgreSQL.
            replay = workload.next_batch() if isinstance(phase.database, Postgres) else None
            handler.prepare(timed[0])  # the connection in use again: no idle ping in a batch
            handler.activate()
            try:
                result.breakdown = hotspots.breakdown(
                    lambda b: handler.apply(event(b)), timed, replay
                )
            except Exception as exc:
                result.notes.append(f"breakdown: {type(exc).__name__}: {exc}")
            extra += [*timed, *([replay] if replay is not None else [])]
        progress(f"  {phase.title}: profile of one {workload.size:,}-record batch")
        batch = workload.next_batch()
        prepared = handler.prepare(batch)
        result.profile = hotspots.profile(lambda: handler.apply(prepared))
        result.profile_size = workload.size
        extra.append(batch)
        for other in others:
            for b in extra:
                other.method.apply(other.method.prepare(b))

    def check_states(
        self, phase: Phase, result: PhaseResult, contenders: Sequence[Contender]
    ) -> None:
        db = phase.database
        for contender in contenders:
            if contender.compare_with is None:
                continue
            theirs = db.state(*contender.table)
            ours = db.state(*contender.compare_with)
            if contender.key_ranges is not None:  # cdc's rows of the sizes it ran at
                ranges = contender.key_ranges
                ours = {k: v for k, v in ours.items() if any(a <= k < b for a, b in ranges)}
            different = differences(theirs, ours, contender.compare_items)
            rtt = "" if contender.rtt_ms is None else f" at RTT {contender.rtt_ms:g} ms"
            what = "" if contender.compare_items else " (sequence, flags; items not compared)"
            line = (
                f"{contender.name}{rtt}: {len(theirs):,} rows, cdc's {len(ours):,}, "
                f"{different} keys differ{what}"
            )
            result.state_checks.append(line)
            if different:
                raise BenchFailure(f"final states differ: {line}")


def phases(args: argparse.Namespace, run: Run, results: Results) -> list[Phase]:
    """The databases that answer, in the order they run."""
    wanted = [d.strip() for d in args.databases.split(",") if d.strip()]
    found: list[Phase] = []
    if "postgresql" in wanted:
        pg = Postgres(args.database_url)
        run.databases.append(pg)
        found.append(
            Phase(
                "postgresql",
                "PostgreSQL, direct (local TCP)",
                pg,
                "all-types",
                peers=not args.no_peers,
                naive=args.naive,
                floor_label="COPY floor",
            )
        )
        if args.classic:
            found.append(
                Phase(
                    "postgresql-classic",
                    "PostgreSQL, direct, classic workload",
                    pg,
                    "classic",
                    floor_label="COPY floor",
                )
            )
        if not args.no_proxy:
            try:
                from sqlalchemy.engine import make_url

                from bench.proxy import LatencyProxy, ProxyUnavailable

                target = make_url(args.database_url)
                proxy = LatencyProxy(target.host or "127.0.0.1", target.port or 5432)
                run.closers.append(proxy.close)
                run.proxied_url = with_port(args.database_url, "127.0.0.1", proxy.port)
                rtts = tuple(float(r) for r in args.rtts.split(","))
                found.append(
                    Phase(
                        "postgresql-rtt",
                        "PostgreSQL through the latency proxy, RTT "
                        + " and ".join(f"{r:g}" for r in rtts)
                        + " ms",
                        pg,
                        "all-types",
                        rtts=rtts,
                        counter=proxy.turns,
                        set_rtt=proxy.set_rtt_ms,
                        floor_label="COPY floor",
                        notes=[] if proxy.realtime else ["proxy not at real-time priority"],
                    )
                )
            except ProxyUnavailable as exc:
                results.notes.append(f"PostgreSQL across a network: n/a, {exc}")
    if "mariadb" in wanted:
        try:
            maria = MariaDB(args.mysql_url)
            mysql_counter, undo = count_mysql_commands()
            run.closers.append(undo)
        except Exception as exc:
            results.notes.append(f"MariaDB: skipped, cannot connect: {type(exc).__name__}: {exc}")
        else:
            run.databases.append(maria)
            found.append(
                Phase(
                    "mariadb",
                    "MariaDB (local TCP; round trips = commands pymysql sent)",
                    maria,
                    "all-types",
                    counter=mysql_counter,
                    floor_label="multi-row INSERT floor",
                )
            )
    if "sqlite" in wanted:
        lite = Sqlite()
        run.databases.append(lite)
        found.append(
            Phase(
                "sqlite", "SQLite (a file, WAL)", lite, "all-types", floor_label="executemany floor"
            )
        )
    return found


def execute(args: argparse.Namespace, mode: Mode) -> Results:
    results = Results(
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join(["python", "bench/run.py", *sys.argv[1:]]),
        mode=mode.name,
        repeats=mode.repeats,
        large_repeats=mode.repeats_at(LARGE),
        sizes=list(mode.sizes),
        breakdown_batches=mode.breakdown_batches,
        machine=machine_info(),
    )
    run = Run(args, mode)
    progress(f"run {run.run_id}; mode {mode.name}; sizes {', '.join(map(str, mode.sizes))}")
    try:
        ready: list[Phase] = []
        for phase in phases(args, run, results):
            try:
                run.prepare_phase(phase, results)
            except BenchFailure as exc:
                results.problems.append(f"{phase.title}: {exc}")
            else:
                ready.append(phase)
        for kind in dict.fromkeys(p.workload for p in ready):
            run.measure([p for p in ready if p.workload == kind], results)

        progress("decoding")
        for kind in WORKLOADS:
            sample = Workload(50, 1, SequenceNumbers(), kind=kind).batch(0)
            images = [r["dynamodb"]["NewImage"] for r in sample]
            decoded = micro.decode_timings(images, mode.decode_number, mode.decode_repeat)
            results.decode[kind] = decoded
            results.notes.extend(decoded.errors)

        progress("import time (fresh subprocesses)")
        results.imports = micro.import_timings(mode.import_runs, detail=mode.name != "smoke")

        pg = Postgres(args.database_url)
        run.databases.append(pg)
        for index, size in enumerate(mode.memory_sizes):
            progress(f"peak RSS, {size:,}-record batch (fresh subprocess)")
            schema = run.schema(pg)
            figures = micro.peak_memory(
                size, args.database_url, schema, 900_000_000 + index * 50_000_000, "all-types"
            )
            results.memory.append(figures)
            if figures.failures:
                results.problems.append(f"the memory probe's batch had {figures.failures} failures")
    except BenchFailure as exc:
        results.problems.append(str(exc))
    finally:
        run.cleanup()
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
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("CDC_BENCH_MYSQL_URL") or DEFAULT_MYSQL_URL,
        help="MariaDB/MySQL (default: $CDC_BENCH_MYSQL_URL or %(default)s); "
        "skipped with a note when it does not answer",
    )
    parser.add_argument(
        "--databases",
        default="postgresql,mariadb,sqlite",
        help="which of postgresql, mariadb, sqlite (default: all three)",
    )
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="3 repeats, peer up to 1,000")
    speed.add_argument("--smoke", action="store_true", help="tiny batches, one run: seconds")
    parser.add_argument("--sizes", help="batch sizes, comma-separated (default: 100,1000,10000)")
    parser.add_argument("--repeats", type=int, help="timed runs per size")
    parser.add_argument("--rtts", default="0,1", help="RTTs through the proxy, ms (default 0,1)")
    parser.add_argument("--no-proxy", action="store_true", help="skip the latency proxy")
    parser.add_argument("--no-peers", action="store_true", help="skip the Powertools peer")
    parser.add_argument(
        "--classic", action="store_true", help="also the classic workload on PostgreSQL"
    )
    parser.add_argument(
        "--naive", action="store_true", help="also the naive per-record baseline (slow)"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip breakdowns and profiles")
    parser.add_argument("--keep-schema", action="store_true", help="do not drop the bench schemas")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    args = parser.parse_args(argv)

    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.sizes:
        mode = replace(mode, sizes=tuple(int(s) for s in args.sizes.split(",")))
    if args.repeats:
        mode = replace(mode, repeats=args.repeats)
    if any(size < 2 for size in mode.sizes) or mode.repeats < 1:
        parser.error("sizes must be ≥ 2 and repeats ≥ 1")
    unknown = set(args.databases.split(",")) - {"postgresql", "mariadb", "sqlite", ""}
    if unknown:
        parser.error(f"unknown database(s): {', '.join(sorted(unknown))}")

    results = execute(args, mode)
    results.machine["load_at_end"] = f"{os.getloadavg()[0]:.2f}"
    print(report.render(results))
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=2, default=str))
    return 1 if results.problems else 0


if __name__ == "__main__":
    sys.exit(main())
