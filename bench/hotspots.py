"""Where the handler's time goes, for the people making it faster. Best effort: these
probes reach into cdc's internals (the replicator, its engine), so each of them says
"n/a" instead of failing when those change.

* `breakdown`: unprofiled wall-clock split of warm batches: the pure part
  (`Replicator.prepare`: parse, keys, plan), the values built while writing
  (`TableSpec.materialize`: decode, JSON encode), the wait for pipelined upserts
  (the pipeline's sync, `psycopg.Pipeline.__exit__`: server time not hidden behind
  Python), SQLAlchemy compile + bind
  processing (engine events), the driver (psycopg's execute, COPY blocks and commit,
  wrapped for the duration), and everything else;
* `replay`: the batch's bulk statement replayed inside a savepoint (rolled back) with
  psycopg directly: with the text parameters SQLAlchemy sends, with the same parameters
  in binary format (`%(name)b` placeholders), and under `EXPLAIN ANALYZE` for the
  server's own time;
* `profile`: one batch under cProfile, exclusive time grouped by owner (stdlib and
  builtins are charged to whoever called them), and the top functions.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Func = tuple[str, int, str]


# --- unprofiled breakdown ---------------------------------------------------------------


def _wrap_timed(owner: Any, name: str, into: list[float]) -> Callable[[], None] | None:
    """Wrap `owner.name` (a class's method, or an instance attribute over its class's)
    to add each call's duration to `into`; returns what undoes it, or None if cdc no
    longer has it."""
    function = getattr(owner, name, None)
    if owner is None or function is None:
        return None
    own = name in vars(owner)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)

    setattr(owner, name, timed)
    return (lambda: setattr(owner, name, function)) if own else (lambda: delattr(owner, name))


@dataclass
class Breakdown:
    records: int
    total_s: float
    prepare_s: float | None  # inside the same call: Replicator.prepare, when it is called
    compile_s: float  # SQLAlchemy before_execute → before_cursor_execute
    execute_s: float  # psycopg/pymysql Cursor.execute/executemany: escaping, round trip, server
    copy_s: float  # psycopg `with cursor.copy(...)` blocks: rows written, sent, COPY ends
    commit_s: float  # psycopg Connection.commit
    statements: int  # psycopg executes (SQLAlchemy's and any raw ones)
    copies: int
    calls: list[tuple[str, float]] = field(default_factory=list)  # (SQL, seconds), in order
    build_s: float | None = None  # TableSpec.materialize: values built while writing
    wait_s: float | None = None  # psycopg.Pipeline.__exit__: waiting on pipelined upserts

    @property
    def other_s(self) -> float:
        known = (self.prepare_s or 0.0) + self.compile_s + self.execute_s + self.copy_s
        known += (self.build_s or 0.0) + (self.wait_s or 0.0)
        return self.total_s - known - self.commit_s


@dataclass
class Replay:
    rows: int  # elements in the statement's largest array parameter
    text_s: float  # what the handler sends: psycopg's text-format parameters
    binary_s: float  # the same statement with binary parameters (%b placeholders)
    server_s: float  # EXPLAIN ANALYZE: planning + execution, on the server


@dataclass
class _Clock:
    """SQLAlchemy engine events (compile time, the replay probe) and wrappers around
    psycopg's Cursor.execute/executemany/copy and Connection.commit (driver time, for
    SQLAlchemy's statements and for raw-cursor work such as COPY alike)."""

    compile_s: float = 0.0
    execute_s: float = 0.0
    copy_s: float = 0.0
    commit_s: float = 0.0
    statements: int = 0
    copies: int = 0
    calls: list[tuple[str, float]] = field(default_factory=list)
    replay: Replay | None = None
    replay_error: str | None = None
    arm_replay: bool = False
    _t0: float | None = None
    _depth: int = 0
    _saved: dict[str, Any] = field(default_factory=dict)

    def reset(self) -> None:
        self.compile_s = self.execute_s = self.copy_s = self.commit_s = 0.0
        self.statements = self.copies = 0
        self.calls = []

    # SQLAlchemy events

    def before_execute(self, *_: Any) -> None:
        self._t0 = time.perf_counter()

    def before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if self.arm_replay and not many and _bulk_size(parameters) >= 2:
            self.arm_replay = False
            try:
                self.replay = _replay(conn, statement, parameters)
            except Exception as exc:
                self.replay_error = f"{type(exc).__name__}: {exc}"
        if self._t0 is not None:
            self.compile_s += time.perf_counter() - self._t0
            self._t0 = None

    # psycopg wrappers

    def install(self) -> None:
        import psycopg

        clock = self
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
        copy, commit = psycopg.Cursor.copy, psycopg.Connection.commit
        self._saved = {
            "execute": execute,
            "executemany": executemany,
            "copy": copy,
            "commit": commit,
        }

        def timed(method: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if clock._depth:  # nested inside another timed call
                    return method(*args, **kwargs)
                clock._depth += 1
                started = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    clock._depth -= 1
                    took = time.perf_counter() - started
                    clock.execute_s += took
                    clock.statements += 1
                    clock.calls.append((_label(args[1] if len(args) > 1 else None), took))

            return wrapper

        @contextlib.contextmanager
        def timed_copy(cursor: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            started = time.perf_counter()
            clock._depth += 1
            try:
                with copy(cursor, *args, **kwargs) as block:
                    yield block
            finally:
                clock._depth -= 1
                took = time.perf_counter() - started
                clock.copy_s += took
                clock.copies += 1
                clock.calls.append((_label(args[0] if args else None), took))

        def timed_commit_of(commit: Callable[[Any], None]) -> Callable[[Any], None]:
            def timed_commit(connection: Any) -> None:
                started = time.perf_counter()
                try:
                    commit(connection)
                finally:
                    took = time.perf_counter() - started
                    clock.commit_s += took
                    clock.calls.append(("COMMIT", took))

            return timed_commit

        psycopg.Cursor.execute = timed(execute)  # type: ignore[method-assign]
        psycopg.Cursor.executemany = timed(executemany)  # type: ignore[method-assign]
        psycopg.Cursor.copy = timed_copy  # type: ignore[method-assign,assignment]
        psycopg.Connection.commit = timed_commit_of(commit)  # type: ignore[method-assign,assignment]
        try:  # MariaDB/MySQL: pymysql's execute and commit, timed the same way
            import pymysql
        except ImportError:
            return
        self._saved["pymysql"] = (
            pymysql.cursors.Cursor.execute,
            pymysql.cursors.Cursor.executemany,
            pymysql.connections.Connection.commit,
        )
        pymysql.cursors.Cursor.execute = timed(pymysql.cursors.Cursor.execute)
        pymysql.cursors.Cursor.executemany = timed(pymysql.cursors.Cursor.executemany)
        pymysql.connections.Connection.commit = timed_commit_of(
            pymysql.connections.Connection.commit
        )

    def uninstall(self) -> None:
        import psycopg

        if self._saved:
            psycopg.Cursor.execute = self._saved["execute"]  # type: ignore[method-assign]
            psycopg.Cursor.executemany = self._saved["executemany"]  # type: ignore[method-assign]
            psycopg.Cursor.copy = self._saved["copy"]  # type: ignore[method-assign]
            psycopg.Connection.commit = self._saved["commit"]  # type: ignore[method-assign]
            if "pymysql" in self._saved:
                import pymysql

                execute, executemany, commit = self._saved["pymysql"]
                pymysql.cursors.Cursor.execute = execute
                pymysql.cursors.Cursor.executemany = executemany
                pymysql.connections.Connection.commit = commit
            self._saved = {}


def _label(query: object, width: int = 90) -> str:
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    text = " ".join(query.split()) if isinstance(query, str) else type(query).__name__
    if text == ";":
        return "; (an empty statement: SQLAlchemy's pool pre-ping)"
    return text if len(text) <= width else text[: width - 3] + "..."


def _bulk_size(parameters: Any) -> int:
    if not isinstance(parameters, dict):
        return 0
    return max((len(v) for v in parameters.values() if isinstance(v, list)), default=0)


def _replay(conn: Any, statement: str, parameters: Any, rounds: int = 3) -> Replay:
    """Run the statement again inside a savepoint that is rolled back each time: the
    handler's transaction, and what it then commits, are unchanged."""
    pg = conn.connection.driver_connection
    # psycopg sends %s parameters as text, %b ones in binary format (no array quoting).
    binary = re.sub(r"%\((\w+)\)s", r"%(\1)b", statement)
    best: dict[str, float] = {}
    with pg.cursor() as cur:
        for _ in range(rounds):
            for variant in ("text", "binary", "server"):
                cur.execute("SAVEPOINT cdc_bench_replay")
                try:
                    started = time.perf_counter()
                    if variant == "server":
                        cur.execute(
                            "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + statement, parameters
                        )
                        row = cur.fetchone()
                        plan = row[0][0] if row else {}
                        took = (plan["Planning Time"] + plan["Execution Time"]) / 1000
                    else:
                        cur.execute(binary if variant == "binary" else statement, parameters)
                        took = time.perf_counter() - started
                finally:
                    cur.execute("ROLLBACK TO SAVEPOINT cdc_bench_replay")
                    cur.execute("RELEASE SAVEPOINT cdc_bench_replay")
                best[variant] = min(took, best.get(variant, took))
    return Replay(_bulk_size(parameters), best["text"], best["binary"], best["server"])


@dataclass
class BreakdownReport:
    median: Breakdown | None
    replay: Replay | None
    errors: list[str] = field(default_factory=list)


def breakdown(
    apply: Callable[[list[dict[str, Any]]], None],
    batches: list[list[dict[str, Any]]],
    replay_batch: list[dict[str, Any]] | None,
) -> BreakdownReport:
    """`apply` runs the handler on a batch; `batches` are timed, `replay_batch` (applied
    after them, not timed) carries the replay probe."""
    from sqlalchemy import event

    import cdc.handler

    errors: list[str] = []
    try:
        replicator = cdc.handler.replicator()
        engine = replicator.engine
    except Exception as exc:
        return BreakdownReport(None, None, [f"no replicator/engine: {type(exc).__name__}: {exc}"])

    results: list[Breakdown] = []
    clock = _Clock()
    listeners = (
        ("before_execute", clock.before_execute),
        ("before_cursor_execute", clock.before_cursor_execute),
    )
    # Time the pure part inside the handler's own call (an instance attribute over the
    # bound method), the values built lazily while writing and the waits for pipelined
    # upserts (class-level); all removed afterwards. What cdc no longer has reads n/a.
    import psycopg

    from cdc.core import mapping

    prepared: list[float] = []
    built: list[float] = []
    waited: list[float] = []
    probes = {
        "Replicator.prepare": (replicator, "prepare", prepared),
        "TableSpec.materialize": (mapping.TableSpec, "materialize", built),
        # The pipeline's sync: the server time not hidden behind building values.
        "Pipeline.__exit__": (psycopg.Pipeline, "__exit__", waited),
    }
    undo: dict[str, Callable[[], None]] = {}
    for label, (owner, method, into) in probes.items():
        restore = _wrap_timed(owner, method, into)
        if restore is None:
            errors.append(f"{label}: not found")
        else:
            undo[label] = restore
    for name, fn in listeners:
        event.listen(engine, name, fn)
    clock.install()
    try:
        for batch in batches:
            clock.reset()
            prepared.clear()
            built.clear()
            waited.clear()
            started = time.perf_counter()
            apply(batch)
            total = time.perf_counter() - started
            results.append(
                Breakdown(
                    records=len(batch),
                    total_s=total,
                    prepare_s=sum(prepared) if prepared else None,  # n/a if not called
                    compile_s=clock.compile_s,
                    execute_s=clock.execute_s,
                    copy_s=clock.copy_s,
                    commit_s=clock.commit_s,
                    statements=clock.statements,
                    copies=clock.copies,
                    calls=list(clock.calls),
                    build_s=sum(built) if "TableSpec.materialize" in undo else None,
                    wait_s=sum(waited) if "Pipeline.__exit__" in undo else None,
                )
            )
        if replay_batch is not None:
            clock.arm_replay = True
            apply(replay_batch)
            clock.arm_replay = False
            if clock.replay is None:
                errors.append(
                    "replay: "
                    + (clock.replay_error or "the handler bound no array parameters (COPY?)")
                )
    finally:
        clock.uninstall()
        for name, fn in listeners:
            event.remove(engine, name, fn)
        for restore in undo.values():
            restore()

    # The batch of median total time, whole: its parts add up (medians of parts would not).
    median = sorted(results, key=lambda b: b.total_s)[len(results) // 2] if results else None
    return BreakdownReport(median, clock.replay, errors)


# --- cProfile ---------------------------------------------------------------------------

# (test on the file name or function name, owner), first match wins.
_OWNERS: tuple[tuple[Callable[[str, str], bool], str], ...] = (
    (
        lambda f, n: "/cdc/core/decode.py" in f or "/cdc/core/jsontext.py" in f,
        "cdc decode (cdc/core/decode.py, jsontext.py)",
    ),
    (
        lambda f, n: "/cdc/sources/dynamodb_streams/records.py" in f,
        "cdc record parsing (cdc/sources/dynamodb_streams/records.py)",
    ),
    (lambda f, n: "/cdc/core/mapping.py" in f or "/cdc/core/plan.py" in f, "cdc mapping + plan"),
    (lambda f, n: "/cdc/sql/backends/" in f, "cdc statement building (cdc/sql/backends)"),
    (lambda f, n: "/cdc/" in f, "cdc apply/handler/bookkeeping"),
    (lambda f, n: "orjson" in n, "JSON encode (orjson.dumps)"),
    (
        lambda f, n: "/sqlalchemy/sql/compiler.py" in f or "/sqlalchemy/sql/crud.py" in f,
        "SQLAlchemy compile (sql/compiler.py, crud.py)",
    ),
    (lambda f, n: "/sqlalchemy/sql/" in f, "SQLAlchemy statement build, coercion, cache keys"),
    (lambda f, n: "/sqlalchemy/" in f, "SQLAlchemy engine/pool/types"),
    (
        lambda f, n: ("/psycopg/connection.py" in f and n == "wait") or "/psycopg/waiting.py" in f,
        "waiting on the server (round trips)",
    ),
    (lambda f, n: "/psycopg/types/array.py" in f, "psycopg array adaptation"),
    (lambda f, n: "/psycopg/_copy" in f or "/psycopg/copy.py" in f, "psycopg COPY (rows, send)"),
    (lambda f, n: "/psycopg/" in f or "psycopg" in n, "psycopg other (adaptation, protocol)"),
    (lambda f, n: "/pymysql/" in f, "pymysql: escaping, protocol, waiting on the server"),
    (lambda f, n: "sqlite3." in n, "sqlite3: the database's own work (execute, commit)"),
    (lambda f, n: "/tenacity/" in f, "tenacity"),
    (lambda f, n: "/bench/" in f, "bench harness"),
)
UNATTRIBUTED = "other (stdlib with no owner)"


def _owner(func: Func) -> str | None:
    filename, _, name = func
    for test, owner in _OWNERS:
        if test(filename, name):
            return owner
    return None


def _short(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    for marker in ("site-packages/", "/work/main/", "/lib/python3."):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker == "/lib/python3.":
                filename = "stdlib/" + filename.split("/", 1)[1]
            break
    return f"{filename}:{line}({name})"


@dataclass
class ProfileReport:
    wall_s: float  # of the profiled call (profiling slows Python code several times)
    total_s: float  # sum of exclusive times
    owners: list[tuple[str, float]]  # exclusive seconds per owner, largest first
    top: list[tuple[str, int, float, float]]  # function, calls, tottime, cumtime
    cumulative: list[tuple[str, int, float, float]]


def profile(apply: Callable[[], None], top: int = 15) -> ProfileReport:
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        apply()
    finally:
        profiler.disable()
    wall = time.perf_counter() - started
    stats: dict[Func, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    memo: dict[Func, dict[str, float]] = {}

    def shares(func: Func, seen: frozenset[Func]) -> dict[str, float]:
        """How `func`'s exclusive time splits between owners (fractions summing to 1)."""
        owner = _owner(func)
        if owner is not None:
            return {owner: 1.0}
        if func in memo:
            return memo[func]
        callers: dict[Func, tuple[Any, ...]] = stats[func][4] if func in stats else {}
        weights = {c: float(v[2]) for c, v in callers.items() if c not in seen}
        total = sum(weights.values())
        result: dict[str, float] = {}
        if total <= 0:
            result = {UNATTRIBUTED: 1.0}
        else:
            for caller, weight in weights.items():
                for name, share in shares(caller, seen | {func}).items():
                    result[name] = result.get(name, 0.0) + share * weight / total
        memo[func] = result
        return result

    owners: dict[str, float] = {}
    for func, (_, _, tottime, _, _) in stats.items():
        for name, share in shares(func, frozenset()).items():
            owners[name] = owners.get(name, 0.0) + tottime * share
    total = sum(owners.values())
    rows = [(_short(f), int(v[1]), float(v[2]), float(v[3])) for f, v in stats.items()]
    by_tottime = sorted(rows, key=lambda r: r[2], reverse=True)[:top]
    interesting = [r for r in rows if "/bench/" not in r[0] and "bench/" not in r[0][:6]]
    by_cumtime = sorted(interesting, key=lambda r: r[3], reverse=True)[: top + 10]
    return ProfileReport(
        wall_s=wall,
        total_s=total,
        owners=sorted(owners.items(), key=lambda kv: kv[1], reverse=True),
        top=by_tottime,
        cumulative=by_cumtime,
    )
