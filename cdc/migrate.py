"""Run the alembic migrations (bookkeeping tables, configured tables), write the user's
revisions, and compare the database as it is with what the mapping promises.

alembic is imported here, not at module import of the handler: a warm container never
pays for it, and a cold one only when the bookkeeping tables are missing.

Two lines of revisions share one `alembic_version` table (README, Migrations): cdc's
own (`migrations/versions`, 0001 → 0002 → …, shipped in the package) and the user's
revisions of the mapping, in a directory of theirs (`migrations` in the mapping file or
CDC_MIGRATIONS_DIR) on their own branch, labelled `mapping`. Upgrades go to `heads`.
"""

from __future__ import annotations

import os
import re
import threading
from argparse import Namespace
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Engine, MetaData, Table, func, inspect, select
from sqlalchemy.engine import Dialect

from cdc.errors import CdcError, ConfigError
from cdc.schema import BOOKKEEPING_TABLES

if TYPE_CHECKING:
    from cdc.config import Settings


# alembic keeps its `context` and `op` as process-wide globals: two threads running
# migrations at once (several replicators meeting a new database) would tear each
# other's down. The database-side advisory lock (migrations/env.py) orders processes.
_ALEMBIC = threading.RLock()

# The branch label of the user's revisions; cdc's own chain has none.
MAPPING_BRANCH = "mapping"
FILE_TEMPLATE = "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s"


class MigrationError(CdcError):
    """A migration cannot proceed without a person (e.g. a table in the way holds data)."""


def migrations_dir() -> Path:
    """`cdc/migrations` in a wheel or Lambda zip; `migrations/` in a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the cdc migrations directory is missing from this installation")


def user_migrations_dir(settings: Settings | None, *, create: bool = False) -> Path | None:
    """The directory of the user's revisions, if one is configured and exists (made
    when `create`). A directory not made yet holds no revisions; were it a typo, the
    revisions it misses leave the database differing from the mapping, which `cdc
    migrate` and the replicator both report."""
    if settings is None or settings.migrations_dir is None:
        return None
    path = settings.migrations_dir.resolve()
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.is_dir():
        return None
    if path == (migrations_dir() / "versions").resolve():
        raise ConfigError(
            f"the migrations directory {path} is cdc's own; choose a directory of yours"
        )
    return path


def alembic_config(
    engine: Engine | None = None, settings: Settings | None = None, *, create: bool = False
) -> Any:
    from alembic.config import Config

    scripts = migrations_dir()
    # quiet: cdc says what it did in its own words ("wrote PATH: review it, ...").
    config = Config(cmd_opts=Namespace(quiet=True))
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("file_template", FILE_TEMPLATE)
    user = user_migrations_dir(settings, create=create)
    if user is not None:
        # os.pathsep between the locations (alembic's "os" separator).
        locations = [str(scripts / "versions"), str(user)]
        config.set_main_option("version_path_separator", "os")
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", os.pathsep.join(locations))
    config.attributes["engine"] = engine
    config.attributes["settings"] = settings
    return config


def upgrade(
    engine: Engine, settings: Settings, revision: str = "heads", sql: bool = False
) -> list[str]:
    """alembic upgrade, then create the mapping's tables that no revision created yet.
    Returns how the database still differs from the mapping, one readable line per
    difference (see migrations/env.py); empty when it matches."""
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config(engine, settings)
    config.attributes["create_configured_tables"] = True
    with _ALEMBIC:
        try:
            skip = (
                None if sql or revision != "heads" else _history_to_skip(config, engine, settings)
            )
            if skip is None:
                command.upgrade(config, revision, sql=sql)
            else:
                cdc_head, user_heads = skip
                command.upgrade(config, cdc_head)  # and the mapping's missing tables
                if config.attributes.get("differences"):
                    command.upgrade(config, "heads")  # yours are needed after all
                else:
                    command.stamp(config, user_heads)
        except CommandError as exc:
            # e.g. the database is stamped with a revision of yours this process cannot
            # see: the migrations directory is missing or not the one that holds it.
            where = settings.migrations_dir or "none configured"
            raise MigrationError(
                f"alembic: {str(exc).rstrip('.')} (your migrations directory: {where})"
            ) from None
    return list(config.attributes.get("differences", []))


def _history_to_skip(
    config: Any, engine: Engine, settings: Settings
) -> tuple[str, list[str]] | None:
    """Your revisions are history on a database where your branch was never applied and
    either none of the mapping's tables exist (a new environment: cdc makes them as the
    mapping is) or all do (made by the function's first batch, as the mapping is): they
    tell how older databases reached the mapping, and would fail here (altering tables
    no revision made, or adding columns already there). Returns (cdc's head, your heads)
    to upgrade cdc's branch first; your heads are then stamped as applied if the
    database matches the mapping, run otherwise. None: upgrade as usual."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    user = user_migrations_dir(settings)
    if user is None:
        return None
    scripts = ScriptDirectory.from_config(config)
    every = list(scripts.walk_revisions())
    ours = {s.revision for s in every if Path(s.path).resolve().parent == user}
    cdcs = {s.revision: s for s in every if s.revision not in ours}
    cdc_heads = [r for r, s in cdcs.items() if not s.nextrev & cdcs.keys()]
    if not ours or len(cdc_heads) != 1:
        return None
    user_heads = sorted(r for r in ours if not scripts.get_revision(r).nextrev & ours)
    metadata = target_metadata(settings, engine.dialect.name)
    mapped = [t for t in metadata.sorted_tables if t.name not in BOOKKEEPING_TABLES]
    with engine.connect() as conn:
        current = MigrationContext.configure(
            conn, opts={"version_table_schema": settings.schema}
        ).get_current_heads()
        if set(current) & ours:
            return None
        inspector = inspect(conn)
        found = [inspector.has_table(t.name, schema=t.schema) for t in mapped]
        if not mapped or (any(found) and not all(found)):
            return None
    return cdc_heads[0], user_heads


def write_revision(engine: Engine, settings: Settings, message: str, *, empty: bool) -> Path:
    """A new revision of the user's mapping branch, autogenerated from the mapping
    (unless `empty`), in the user's migrations directory. Returns its path."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if settings.migrations_dir is None:
        raise ConfigError(
            'no directory for your revisions: set `migrations = "DIR"` in the mapping file '
            "(relative to it) or CDC_MIGRATIONS_DIR"
        )
    config = alembic_config(engine, settings, create=True)
    config.attributes["mapping_only"] = True  # never cdc's bookkeeping tables
    user = user_migrations_dir(settings)
    assert user is not None
    with _ALEMBIC:
        scripts = ScriptDirectory.from_config(config)
        ours = {
            s.revision: s for s in scripts.walk_revisions() if Path(s.path).resolve().parent == user
        }
        mine = [r for r, s in ours.items() if not s.nextrev & ours.keys()]  # their heads
        if len(mine) > 1:
            raise MigrationError(
                f"{user} holds {len(mine)} heads ({', '.join(sorted(mine))}); merge them "
                "with alembic first"
            )
        options: dict[str, Any] = (
            {"head": mine[0]}
            if mine
            else {"head": "base", "branch_label": MAPPING_BRANCH}  # a root of its own
        )
        try:
            script = command.revision(
                config,
                message=message,
                autogenerate=not empty,
                version_path=str(user),
                **options,
            )
        except CommandError as exc:
            hint = "; run `cdc migrate` first" if "not up to date" in str(exc) else ""
            raise MigrationError(f"alembic: {str(exc).rstrip('.')}{hint}") from None
    assert script is not None
    assert not isinstance(script, list)
    return Path(script.path)


def ensure_bookkeeping(
    engine: Engine, schema: str | None, settings: Settings | None = None
) -> None:
    """Run the migrations when a bookkeeping table is missing (first run on a new
    database); otherwise one catalog query and nothing else."""
    if _bookkeeping_exists(engine, schema):
        return
    if settings is None:
        from cdc.config import Settings

        settings = Settings(database_url=engine.url, schema=schema)
    with _ALEMBIC:  # another thread may have just done it
        if not _bookkeeping_exists(engine, schema):
            upgrade(engine, settings)  # differences are checked table by table at run time


def _bookkeeping_exists(engine: Engine, schema: str | None) -> bool:
    inspector = inspect(engine)
    if schema is not None and engine.dialect.name != "sqlite" and not inspector.has_schema(schema):
        return False  # MySQL cannot list the tables of a database that is not there yet
    return set(BOOKKEEPING_TABLES) <= set(inspector.get_table_names(schema=schema))


def target_metadata(settings: Settings, dialect_name: str) -> MetaData:
    """What the database should contain: the bookkeeping tables and every typed table
    of the mapping, as built for `dialect_name`. alembic autogenerate diffs against it."""
    from cdc.bookkeeping import tables
    from cdc.dialects import dialect_for
    from cdc.mapping import typed_spec

    dialect = dialect_for(dialect_name)
    metadata = MetaData()
    for table in tables(settings.schema).values():
        table.to_metadata(metadata)
    for config in settings.tables.values():
        if config.typed:
            typed_spec(
                config,
                metadata,
                settings.schema,
                dialect.max_identifier_bytes,
                dialect.column_type,
                dialect.table_options(),
            )
    return metadata


# --- idempotent operations for cdc's own revisions ------------------------------------------
#
# MySQL and MariaDB commit every DDL statement on its own: a run interrupted between two
# statements leaves some tables made and `alembic_version` not yet stamped, and the next
# run would fail on "table already exists" for ever. cdc's revisions therefore create
# only what is missing, and remake an empty table left half-made.


def create_table(name: str, *elements: Any, schema: str | None) -> None:
    """`op.create_table`, safe to run again after an interrupted run."""
    from alembic import op

    if op.get_context().as_sql:  # offline: there is no database to look at
        op.create_table(name, *elements, schema=schema)
        return
    bind = op.get_bind()
    inspector = inspect(bind)
    if not inspector.has_table(name, schema=schema):
        op.create_table(name, *elements, schema=schema)
        return
    wanted = [e.name for e in elements if isinstance(e, Column)]
    found = [c["name"] for c in inspector.get_columns(name, schema=schema)]
    if sorted(found) == sorted(wanted):
        return  # made by an interrupted run (one CREATE TABLE is atomic)
    qualified = f"{schema}.{name}" if schema else name
    rows = bind.execute(select(func.count()).select_from(Table(name, MetaData(), schema=schema)))
    if rows.scalar_one():
        raise MigrationError(
            f"table {qualified} exists with columns ({', '.join(found)}), not cdc's "
            f"({', '.join(wanted)}), and holds rows; cdc will not drop it: rename or drop "
            "it, then run `cdc migrate` again"
        )
    op.drop_table(name, schema=schema)
    op.create_table(name, *elements, schema=schema)


def create_index(name: str, table: str, columns: Sequence[str], *, schema: str | None) -> None:
    """`op.create_index`, skipped when an interrupted run already made it."""
    from alembic import op

    context = op.get_context()
    if not context.as_sql:
        existing = inspect(op.get_bind()).get_indexes(table, schema=schema)
        if any(index["name"] == name for index in existing):
            return
    op.create_index(name, table, list(columns), schema=schema)


# --- can the live table hold what the mapping promises? -----------------------------------


@dataclass(frozen=True)
class Capacity:
    """What a column type can hold, for comparing a live column with the mapping's.

    `size`: digits before the point (numeric), bytes (integer, floating point),
    characters (text), bytes (binary), fractional-second digits (datetime); None means
    unbounded. `scale`: digits after the point (numeric).
    """

    family: str
    size: float | None = None
    scale: int = 0
    unsigned: bool = False


_UNBOUNDED = float("inf")
# MySQL sizes in bytes; characters of utf8mb4 take up to 4.
_MYSQL_TEXT = {"TINYTEXT": 255, "TEXT": 65_535, "MEDIUMTEXT": 16_777_215, "LONGTEXT": 2**32 - 1}
_MYSQL_BLOB = {"TINYBLOB": 255, "BLOB": 65_535, "MEDIUMBLOB": 16_777_215, "LONGBLOB": 2**32 - 1}
_INTEGERS = {"TINYINT": 1, "SMALLINT": 2, "MEDIUMINT": 3, "INT": 4, "INTEGER": 4, "BIGINT": 8}
_DDL = re.compile(r"(?P<name>[A-Z][A-Z ]*?)\s*(?:\((?P<a>\d+)(?:\s*,\s*(?P<b>\d+))?\))?")


def capacity(ddl: str, dialect_name: str) -> Capacity:
    """The capacity of a column type from its DDL on `dialect_name` (`NUMERIC(12, 2)`,
    `VARCHAR(384) COLLATE utf8mb4_bin`, `DATETIME(6)`, `TEXT[]`)."""
    text = re.sub(r"\s+(COLLATE|CHARACTER SET)\s+\S+", "", ddl.upper()).strip()
    unsigned = " UNSIGNED" in text
    text = text.replace(" UNSIGNED", "").replace(" ZEROFILL", "")
    if text.endswith("[]"):
        element = capacity(text[:-2], dialect_name)
        return Capacity(f"array of {element.family}", element.size, element.scale)
    if dialect_name == "sqlite":
        return Capacity(_sqlite_affinity(text))
    zoned = re.fullmatch(r"TIMESTAMP(?:\((\d+)\))? WITH TIME ZONE", text)
    if zoned is not None:  # PostgreSQL keeps microseconds unless told fewer
        return Capacity("timestamptz", int(zoned[1]) if zoned[1] else 6)
    match = _DDL.fullmatch(text)
    if match is None:
        return Capacity(text)
    name = match["name"]
    a = int(match["a"]) if match["a"] else None
    b = int(match["b"]) if match["b"] else 0
    mysql = dialect_name in ("mysql", "mariadb")
    if name in ("NUMERIC", "DECIMAL"):
        if a is None:  # PostgreSQL: unconstrained; MySQL: DECIMAL(10,0)
            return Capacity("numeric", 10) if mysql else Capacity("numeric", None)
        return Capacity("numeric", a - b, b)
    if mysql and name in ("TINYINT", "BOOL", "BOOLEAN") and (a == 1 or name != "TINYINT"):
        return Capacity("boolean")
    if name in _INTEGERS:
        return Capacity("integer", _INTEGERS[name], unsigned=unsigned)
    if name in ("BOOLEAN", "BOOL"):
        return Capacity("boolean")
    if name in ("DOUBLE PRECISION", "DOUBLE", "FLOAT8") or (name == "FLOAT" and not mysql):
        return Capacity("floating", 8)
    if name in ("REAL", "FLOAT", "FLOAT4"):
        return Capacity("floating", 4)
    if name in ("VARCHAR", "CHAR", "CHARACTER VARYING", "CHARACTER", "NVARCHAR"):
        return Capacity("text", a)
    if name == "TEXT" and not mysql:
        return Capacity("text", None)
    if name in _MYSQL_TEXT:
        return Capacity("text", _MYSQL_TEXT[name] // 4)
    if name in ("BYTEA",):
        return Capacity("binary", None)
    if name in ("VARBINARY", "BINARY"):
        return Capacity("binary", a)
    if name in _MYSQL_BLOB:
        return Capacity("binary", _MYSQL_BLOB[name])
    if name in ("JSON", "JSONB"):
        return Capacity("json")
    if name == "TIMESTAMPTZ":
        return Capacity("timestamptz", 6 if a is None else a)
    if name == "DATETIME" and mysql:
        return Capacity("datetime", a or 0)
    return Capacity(name, a, b)


def _sqlite_affinity(declared: str) -> str:
    """SQLite keeps what a column's affinity makes of a value (sqlite.org/datatype3):
    TEXT '007' in an INTEGER column becomes 7. Types there differ only by affinity."""
    if "INT" in declared:
        return "INTEGER affinity"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT affinity"
    if "BLOB" in declared or not declared:
        return "BLOB affinity"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "REAL affinity"
    return "NUMERIC affinity"


def holds(actual: Capacity, expected: Capacity) -> bool:
    """Whether every value of a column of capacity `expected` fits one of `actual`
    unchanged: no rounding, no cutting, no conversion."""
    if expected.family == "json" and actual.family == "text":
        return actual.size is None or actual.size >= _MYSQL_TEXT["LONGTEXT"] // 4
    if expected.family == "boolean" and actual.family == "integer":
        return True
    if actual.family != expected.family or (actual.unsigned and not expected.unsigned):
        return False
    if actual.size is None:  # unbounded (PostgreSQL's TEXT, unconstrained NUMERIC, …)
        return True
    if expected.size is None:
        return False
    return actual.size >= expected.size and actual.scale >= expected.scale


def column_problems(
    table: Table, reflected: Sequence[Mapping[str, Any]], dialect: Dialect
) -> list[str]:
    """How the live columns of `table` (as reflected) fall short of its definition:
    one line per column, naming both types. Empty when every column can hold what the
    mapping promises (a wider column is fine)."""
    live = {c["name"]: c for c in reflected}
    problems = []
    for column in table.columns:
        wanted = column.type.compile(dialect=dialect)
        found = live.get(column.name)
        if found is None:
            problems.append(f"column {column.name!r} ({wanted}) is missing")
            continue
        actual_ddl = found["type"].compile(dialect=dialect)
        expected_ddl = _expected_ddl(column, dialect)
        if not holds(capacity(actual_ddl, dialect.name), capacity(expected_ddl, dialect.name)):
            problems.append(
                f"column {column.name!r} is {actual_ddl} in the database, the mapping "
                f"needs {wanted}"
            )
    return problems


def _expected_ddl(column: Column[Any], dialect: Dialect) -> str:
    """The DDL the column's type renders on `dialect` (JSON documents render as JSON or
    JSONB; MariaDB stores JSON as LONGTEXT, which `holds` accepts)."""
    return str(column.type.compile(dialect=dialect))


# --- the difference between the database and the mapping, readably ------------------------


def describe_differences(diff: Sequence[Any], dialect: Dialect) -> list[str]:
    """alembic's `compare_metadata` result as one line per difference."""
    lines: list[str] = []
    for entry in diff:
        if isinstance(entry, list):  # column modifications come grouped
            lines.extend(_describe_one(tuple(e), dialect) for e in entry)
        else:
            lines.append(_describe_one(tuple(entry), dialect))
    return lines


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _describe_one(entry: tuple[Any, ...], dialect: Dialect) -> str:
    kind = entry[0]
    if kind in ("add_table", "remove_table"):
        table = entry[1]
        where = _qualified(table.schema, table.name)
        return f"table {where}: " + (
            "in the mapping, missing from the database"
            if kind == "add_table"
            else "in the database, not in the mapping"
        )
    if kind in ("add_column", "remove_column"):
        _, schema, table_name, column = entry
        ddl = column.type.compile(dialect=dialect)
        where = _qualified(schema, table_name)
        return f"table {where}: column {column.name} ({ddl}) " + (
            "is in the mapping, missing from the database"
            if kind == "add_column"
            else "is in the database, not in the mapping"
        )
    if kind == "modify_type":
        _, schema, table_name, column_name, _info, old, new = entry
        return (
            f"table {_qualified(schema, table_name)}: column {column_name} is "
            f"{old.compile(dialect=dialect)} in the database, {new.compile(dialect=dialect)} "
            "in the mapping"
        )
    if kind == "modify_nullable":
        _, schema, table_name, column_name, _info, old, new = entry
        state = {True: "nullable", False: "NOT NULL"}
        return (
            f"table {_qualified(schema, table_name)}: column {column_name} is "
            f"{state.get(old, old)} in the database, {state.get(new, new)} in the mapping"
        )
    if kind in ("add_index", "remove_index"):
        index = entry[1]
        where = _qualified(index.table.schema, index.table.name)
        return f"table {where}: index {index.name} " + (
            "is in the mapping, missing from the database"
            if kind == "add_index"
            else "is in the database, not in the mapping"
        )
    return " ".join(str(part) for part in entry)  # any other kind, as alembic says it
