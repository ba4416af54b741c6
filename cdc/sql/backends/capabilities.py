"""What a database is, as cdc needs to know it: a backend's capabilities (class
attributes) and the hooks the rest of cdc calls instead of asking which database it
talks to (connecting, errors, statement timeout, migrations, column types, drift).
`Backend` (cdc/sql/backends/base.py) adds how cdc writes to it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy import DateTime, Engine, String, Text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Dialect as SQLDialect
from sqlalchemy.types import TypeEngine

from cdc.config import DatabaseOptions
from cdc.config.databases import DatabaseFacts
from cdc.sql.drift import Capacity
from cdc.sql.errors import ErrorKind, classify_by_sqlstate


class Capabilities:
    """The capabilities and hooks of one database; each backend sets the former and
    overrides the hooks its docstrings say it may."""

    # --- capabilities: every backend sets these ------------------------------------------

    name: ClassVar[str] = ""  # the registry's name, and the module's: postgresql
    label: ClassVar[str] = ""  # for people, in messages: PostgreSQL
    names: ClassVar[tuple[str, ...]] = ()  # SQLAlchemy backend names served (mysql, mariadb)
    driver: ClassVar[str] = ""  # the SQLAlchemy driver cdc uses: postgresql+psycopg
    # The URL schemes users write (what psql and mysql accept) → SQLAlchemy driver names.
    url_drivers: ClassVar[Mapping[str, str]] = {}
    # An RDS secret's `engine` (Aurora's names too) → SQLAlchemy driver name.
    secret_engines: ClassVar[Mapping[str, str]] = {}
    # A secret without `engine` names this database (one backend: cdc's first-class one).
    secret_default: ClassVar[bool] = False
    # Module prefixes of the driver's exceptions: `classify_error` takes those.
    driver_modules: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = ""  # how to install the driver, when it is missing
    default_port: ClassVar[int | None] = None
    network: ClassVar[bool] = True  # a server: TLS and RDS IAM authentication apply
    system_ca: ClassVar[bool] = False  # the driver understands sslrootcert=system
    connect_database_key: ClassVar[str] = "database"  # the driver's name for the database
    max_identifier_bytes: ClassVar[int] = 63
    supports_schemas: ClassVar[bool] = True
    # Whether replica tables made by an earlier cdc may need `upgrade_table`.
    upgrades_tables: ClassVar[bool] = False
    # alembic must rebuild a table to alter it (render_as_batch).
    alters_in_batches: ClassVar[bool] = False
    # Column values as cdc.sql.types binds them: sequence numbers as zero-padded text
    # (no exact 40-digit integer type), datetimes with their zone (else naive UTC).
    sequences_as_text: ClassVar[bool] = True
    binds_aware_datetimes: ClassVar[bool] = False
    # The catalog keeps column comments (drift columns are found by theirs); without,
    # cdc writes the comment into the column's DDL (cdc/sql/drift_columns.py).
    keeps_column_comments: ClassVar[bool] = True
    # One writer at a time: more loading threads would only wait on its lock.
    single_writer: ClassVar[bool] = False

    @classmethod
    def skips_locked_rows(cls, engine: Any) -> bool:
        """Whether the server reads `FOR UPDATE SKIP LOCKED` (workers sharing an export
        claim files with it). Servers that have it override this; the default: no row
        locks to skip."""
        return False

    @classmethod
    def facts(cls) -> DatabaseFacts:
        """The capabilities the configuration needs before connecting (cdc.config
        cannot import this layer: the registry hands it these)."""
        return DatabaseFacts(
            name=cls.name,
            label=cls.label,
            names=cls.names,
            driver=cls.driver,
            url_drivers=dict(cls.url_drivers),
            supports_schemas=cls.supports_schemas,
            max_identifier_bytes=cls.max_identifier_bytes,
            network=cls.network,
            system_ca=cls.system_ca,
        )

    # --- connecting (cdc/sql/engines.py, cdc/sql/credentials.py) ---------------------------

    @classmethod
    def connect_defaults(cls) -> dict[str, Any]:
        """The driver's connect arguments cdc always wants (timeouts, character set);
        the configuration's (`connect_args`) override them. Overridden by each backend."""
        return {}

    @classmethod
    def engine_options(cls) -> dict[str, Any]:
        """`create_engine` keyword arguments (isolation level, pool reset). Overridden
        by MySQL."""
        return {}

    @classmethod
    def prepare_engine(cls, engine: Engine, options: Mapping[str, Any]) -> None:
        """Install the engine's event listeners (SQLite's BEGIN, MySQL's session reset);
        `options` are those it was created with. Overridden by the backends that need
        any."""

    @classmethod
    def connect_args(cls, options: DatabaseOptions) -> dict[str, Any]:
        """The driver's connect arguments for the configured TLS mode, CA bundle and
        prepared statements (README: Configuration). Overridden by network backends."""
        return {}

    @classmethod
    def is_auth_failure(cls, error: BaseException) -> bool:
        """The driver's `error` says the credentials were rejected (a rotated password,
        an expired token). Overridden by network backends."""
        return False

    @classmethod
    def classify_error(cls, error: BaseException) -> ErrorKind:
        """How to react to `error`, an exception of this backend's driver (its module
        starts with one of `driver_modules`): cdc/sql/errors.py. The default reads the
        standard SQLSTATE classes; backends override it with their own codes."""
        return classify_by_sqlstate(error)

    # --- a batch's transaction (cdc/sql/writer.py) ----------------------------------------

    def limit_statement_time(self, conn: Connection, remaining_s: float) -> None:
        """Keep every statement of the transaction within `remaining_s` seconds, lock
        waits included. Overridden by PostgreSQL (statement_timeout) and MySQL."""

    # --- migrations (migrations/env.py) ---------------------------------------------------

    @classmethod
    def lock_migrations(cls, conn: Connection) -> None:
        """Take the lock that serialises concurrent `cdc migrate` runs (held by the
        connection until `unlock_migrations`). Overridden by the server backends."""

    @classmethod
    def unlock_migrations(cls, conn: Connection) -> None:
        """Release `lock_migrations`' lock."""

    @classmethod
    def create_schema_for_migrations(cls, conn: Connection, schema: str) -> None:
        """Make the schema (MySQL: the database) the migrations run in, only when it is
        missing, so a user without CREATE elsewhere is never asked for it. PostgreSQL
        overrides it with CREATE SCHEMA IF NOT EXISTS."""
        from sqlalchemy import inspect
        from sqlalchemy.schema import CreateSchema

        if not inspect(conn).has_schema(schema):
            conn.execute(CreateSchema(schema))

    @classmethod
    def normalize_ddl(cls, ddl: str, dialect: SQLDialect) -> str:
        """A column type's DDL as comparing the mapping with the database should see it
        (uppercase, no spaces; MariaDB's JSON reads back as LONGTEXT). Overridden by
        MySQL."""
        return ddl.upper().replace(" ", "").replace("DOUBLEPRECISION", "FLOAT")

    @classmethod
    def column_capacity(cls, ddl: str) -> Capacity | None:
        """What a live column of type `ddl` (uppercase, no collation) can hold, where
        this database reads a type its own way (MySQL's TINYINT(1), SQLite's
        affinities); None leaves it to the SQL standard's names (cdc/sql/drift.py)."""
        return None

    # --- column types (cdc/sql/types.py asks these) ---------------------------------------

    @classmethod
    def autoincrement_type(cls) -> TypeEngine[int] | None:
        """The type of an autoincrementing id column (the bookkeeping tables' ids) where
        BIGINT does not autoincrement. Overridden by SQLite (INTEGER PRIMARY KEY)."""
        return None

    @classmethod
    def sequence_type(cls, width: int) -> TypeEngine[Any]:
        """The column of a `width`-digit sequence number, compared as an integer: text
        zero-padded to `width` unless overridden (an exact integer type)."""
        return String(width)

    @classmethod
    def exact_string_type(cls, dialect: SQLDialect, length: int) -> TypeEngine[Any]:
        """A text column compared byte for byte (keys: `sp`, `sp ` and `SP` are three
        values). Overridden by MySQL, whose default comparison is not exact."""
        return String(length)

    @classmethod
    def utc_datetime_type(cls) -> TypeEngine[Any]:
        """A point in time (see `binds_aware_datetimes`). Overridden by MySQL."""
        return DateTime(timezone=True)

    @classmethod
    def numbers_as_text(cls, precision: int | None) -> bool:
        """Whether an exact number of `precision` digits (None: any DynamoDB number) is
        kept as canonical text, the database having no exact type for it. Overridden
        by the backends with a decimal type."""
        return True

    @classmethod
    def exact_number_type(
        cls, dialect: SQLDialect, precision: int | None, scale: int | None, key: bool
    ) -> TypeEngine[Any]:
        """An exact number's column (canonical text where `numbers_as_text`)."""
        return Text()
