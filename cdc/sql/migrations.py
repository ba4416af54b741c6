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
import threading
from argparse import Namespace
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Engine, MetaData, Table, func, inspect, select
from sqlalchemy.engine import Connection

from cdc.core.errors import CdcError, ConfigError
from cdc.sql.backends.registry import backend_class, backend_for
from cdc.sql.schema import BOOKKEEPING_TABLES

if TYPE_CHECKING:
    from cdc.config import Settings
    from cdc.core.mapping import TableConfig
    from cdc.sql.replica import ReplicaSpec


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
    package = Path(__file__).resolve().parents[1]  # cdc/, from cdc/sql/migrations.py
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
            if not sql:
                moved = fill_drift_columns(engine, settings)
                if moved:
                    config.attributes["drift_moved"] = moved
            if not sql and revision == "heads":
                _finish_versions(engine, settings)
        except CommandError as exc:
            # e.g. the database is stamped with a revision of yours this process cannot
            # see: the migrations directory is missing or not the one that holds it.
            where = settings.migrations_dir or "none configured"
            raise MigrationError(
                f"alembic: {str(exc).rstrip('.')} (your migrations directory: {where})"
            ) from None
    return list(config.attributes.get("differences", []))


def _finish_versions(engine: Engine, settings: Settings) -> None:
    """Replica tables still holding 40-digit versions at cdc's head revision (the
    revisions were applied as SQL, `cdc migrate --sql`, which cannot see them) are
    widened and re-based here, as migration 0005 does (README: Stream generations)."""
    import logging

    from cdc.sql.generations import upgrade_versions

    with engine.begin() as conn:
        for line in upgrade_versions(conn, settings, narrow_only=True):
            logging.getLogger("cdc").warning("stream generations: %s", line)


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
    if all(found) and all(_drift_only(scripts.get_revision(r).path) for r in ours):
        return None  # only drift columns, each added unless there: run them
    return cdc_heads[0], user_heads


def _drift_only(path: str) -> bool:
    from cdc.sql.drift_revisions import drift_only

    return drift_only(path)


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
    schemas = backend_class(engine.dialect.name).supports_schemas
    if schema is not None and schemas and not inspector.has_schema(schema):
        return False  # MySQL cannot list the tables of a database that is not there yet
    return set(BOOKKEEPING_TABLES) <= set(inspector.get_table_names(schema=schema))


def target_metadata(
    settings: Settings,
    dialect_name: str,
    connection: Connection | None = None,
    *,
    discover: bool = False,
) -> MetaData:
    """What the database should contain: the bookkeeping tables and every typed table
    of the mapping, as built for `dialect_name`. alembic autogenerate diffs against it.

    With a connection, a table with `drift = "add_columns"` also has the drift columns
    its live table has, and, when `discover` (`cdc revision`), new ones for the
    attributes that wait in its `extra` (cdc/core/drift_columns.py)."""
    from cdc.sql.bookkeeping import tables
    from cdc.sql.drift_columns import register_sqlite_comments
    from cdc.sql.replica import entity_specs, typed_spec

    backend = backend_for(dialect_name)
    metadata = MetaData()
    for table in tables(settings.schema).values():
        table.to_metadata(metadata)
    for config in settings.tables.values():
        if config.typed:
            spec = typed_spec(config, metadata, settings.schema, backend)
            if spec.drift is not None and connection is not None:
                register_sqlite_comments()
                _drift_columns(connection, spec, config, backend, discover=discover)
        elif config.entities:  # each entity's table and its child tables
            entity_specs(config, metadata, settings.schema, backend)
    return metadata


def _drift_columns(
    connection: Connection, spec: ReplicaSpec, config: TableConfig, dialect: Any, *, discover: bool
) -> None:
    from cdc.sql.drift_columns import adopt, live_columns
    from cdc.sql.drift_columns import discover as new_columns

    table = spec.table
    if not inspect(connection).has_table(table.name, schema=table.schema):
        return
    found = live_columns(connection, table)
    if discover:
        found += new_columns(connection, config, table, dialect.max_identifier_bytes)
    adopt(spec, found, dialect.column_type)


def fill_drift_columns(engine: Engine, settings: Settings) -> int:
    """`cdc migrate`: move what waits in `extra` into the drift columns made since."""
    from cdc.sql.drift_columns import adopt, fill, live_columns
    from cdc.sql.replica import typed_spec

    dialect = backend_for(engine.dialect.name)
    moved = 0
    for config in settings.tables.values():
        if not config.typed or config.options.drift != "add_columns":
            continue
        spec = typed_spec(config, MetaData(), settings.schema, dialect)
        with engine.connect() as conn:
            if not inspect(conn).has_table(spec.table.name, schema=spec.table.schema):
                continue
            found = live_columns(conn, spec.table)
        adopt(spec, found, dialect.column_type)
        moved += fill(engine, spec)
    return moved


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


# --- the difference between the database and the mapping, readably ------------------------
