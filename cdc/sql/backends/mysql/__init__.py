"""MySQL and MariaDB.

Three differences from ON CONFLICT databases shape this file:

* the guarded upsert is `INSERT … ON DUPLICATE KEY UPDATE`, whose assignments run left
  to right and see the columns already assigned, so every assignment is
  `IF(guard, new, old)` and the columns the guard reads are assigned last;
* its affected-rows count cannot tell an updated row from a stale one, so the stored
  sequence numbers of the batch's keys are read first (`SELECT … FOR UPDATE`, which also
  takes the row locks in key order) and only newer versions are written;
* text comparison is case- and accent-insensitive by default, and `utf8mb4_bin` pads
  with spaces (`'a' = 'a '`): key columns use the server's NO PAD binary collation
  (`cdc.types.ExactString`), so keys `a`, `A` and `a ` stay three rows. Tables made
  before that are converted on first use (`upgrade_table`), and by `cdc migrate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Engine, Table, case, select, text
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Dialect as SQLDialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateSchema
from sqlalchemy.sql import visitors
from sqlalchemy.sql.compiler import TypeCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from cdc.config import DatabaseOptions
from cdc.core.convert import ColumnType
from cdc.core.mapping import SEQ, RowVersion
from cdc.sql.backends.base import Assign, Backend, Guard
from cdc.sql.backends.mysql.session import (
    CONNECT_TIMEOUT_S,
    MAX_DECIMAL_DIGITS,
    MIGRATION_LOCK,
    classify_mysql,
    exact_collation,
    mysql_session_limits,
    reset_session_limits,
    set_session,
)
from cdc.sql.backends.mysql.upgrade import (
    UPGRADE_LOCK_WAIT_S,
    UpgradeNeeded,
    owned_tables,
    upgrade_table,
)
from cdc.sql.drift import Capacity, parse_ddl
from cdc.sql.engines import rollback_on_return_unless_ended
from cdc.sql.errors import ErrorKind, classify, describe
from cdc.sql.replica import ReplicaSpec, keys_in
from cdc.sql.types import ExactNumber, ExactString, JsonDocument

# The text and blob types' sizes in bytes.
TEXT_BYTES = {"TINYTEXT": 255, "TEXT": 65_535, "MEDIUMTEXT": 16_777_215, "LONGTEXT": 2**32 - 1}
BLOB_BYTES = {"TINYBLOB": 255, "BLOB": 65_535, "MEDIUMBLOB": 16_777_215, "LONGBLOB": 2**32 - 1}
ACCESS_DENIED = 1045  # wrong credentials (a rotated password, an expired token)
# InnoDB keys hold at most 3072 bytes: two utf8mb4 key columns of 384 characters.
KEY_CHARS = 384
# Keep one statement well under max_allowed_packet (16 MB by default).
MAX_STATEMENT_BYTES = 4 * 1024 * 1024
MAX_ROWS = 1000
TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


class MySQLBackend(Backend):
    name = "mysql"
    label = "MySQL/MariaDB"
    names = ("mysql", "mariadb")
    driver = "mysql+pymysql"
    # `mariadb://` keeps its name: the collation of exact keys follows it before the
    # first connection (exact_collation), as it does for an RDS secret's `mariadb`.
    url_drivers = {"mysql": driver, "mariadb": "mariadb+pymysql"}
    secret_engines = {
        "mysql": driver,
        "mariadb": "mariadb+pymysql",
        "aurora-mysql": driver,
        "aurora": driver,  # Aurora MySQL 1
    }
    driver_modules = ("pymysql", "MySQLdb")
    install_hint = "pip install 'cdc[mysql]'"
    default_port = 3306
    max_identifier_bytes = 64

    @classmethod
    def skips_locked_rows(cls, engine: Any) -> bool:
        """MySQL 8+ and MariaDB 10.6+."""
        with engine.connect():  # the server version is known once connected
            pass
        version = engine.dialect.server_version_info or ()
        mariadb = bool(getattr(engine.dialect, "is_mariadb", False))
        return tuple(version) >= ((10, 6) if mariadb else (8, 0))

    upgrades_tables = True
    sequences_as_text = False

    # --- connecting -------------------------------------------------------------------

    @classmethod
    def connect_defaults(cls) -> dict[str, Any]:
        return {"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"}

    @classmethod
    def engine_options(cls) -> dict[str, Any]:
        # READ COMMITTED: no gap locks, so the row locks a batch takes (in key order)
        # are all it waits on; concurrent batches then cannot deadlock on gaps. The
        # pool's rollback on return is replaced by one that skips it after a COMMIT.
        return {"isolation_level": "READ COMMITTED", "pool_reset_on_return": None}

    @classmethod
    def prepare_engine(cls, engine: Engine, options: Mapping[str, Any]) -> None:
        reset_session_limits(engine)
        if options.get("pool_reset_on_return", "rollback") is None:
            rollback_on_return_unless_ended(engine)

    @classmethod
    def connect_args(cls, options: DatabaseOptions) -> dict[str, Any]:
        # PyMySQL has no server-side prepared statements, nor opportunistic TLS
        # (allow/prefer connect in clear text).
        args: dict[str, Any] = {}
        mode, ca = options.sslmode, options.sslrootcert
        if mode == "disable":
            args["ssl_disabled"] = True
        elif mode == "require":
            args["ssl"] = {"check_hostname": False, "verify_mode": "none"}
        elif mode in ("verify-ca", "verify-full"):
            args["ssl"] = {"ca": ca, "check_hostname": mode == "verify-full"}
        return args

    @classmethod
    def is_auth_failure(cls, error: BaseException) -> bool:
        args: tuple[Any, ...] = getattr(error, "args", ())
        own = type(error).__module__.startswith(cls.driver_modules)
        return own and bool(args) and args[0] == ACCESS_DENIED

    @classmethod
    def classify_error(cls, error: BaseException) -> ErrorKind:
        return classify_mysql(error)

    def limit_statement_time(self, conn: Connection, remaining_s: float) -> None:
        mariadb = bool(getattr(conn.dialect, "is_mariadb", False))
        set_session(conn, mysql_session_limits(remaining_s, mariadb))

    # --- migrations -------------------------------------------------------------------

    @classmethod
    def lock_migrations(cls, conn: Connection) -> None:
        conn.execute(text(f"SELECT GET_LOCK('{MIGRATION_LOCK}', 60)"))

    @classmethod
    def unlock_migrations(cls, conn: Connection) -> None:
        conn.execute(text(f"SELECT RELEASE_LOCK('{MIGRATION_LOCK}')"))

    @classmethod
    def normalize_ddl(cls, ddl: str, dialect: SQLDialect) -> str:
        ddl = super().normalize_ddl(ddl, dialect)
        # MariaDB's JSON is an alias: the column reads back as LONGTEXT.
        return "JSON" if getattr(dialect, "is_mariadb", False) and ddl == "LONGTEXT" else ddl

    # --- column types -----------------------------------------------------------------

    @classmethod
    def column_capacity(cls, ddl: str) -> Capacity | None:
        parsed = parse_ddl(ddl)
        if parsed is None:
            return None
        name, a, _ = parsed
        if name in ("NUMERIC", "DECIMAL") and a is None:
            return Capacity("numeric", 10)  # DECIMAL means DECIMAL(10,0)
        if name in ("TINYINT", "BOOL", "BOOLEAN") and (a == 1 or name != "TINYINT"):
            return Capacity("boolean")
        if name == "FLOAT":
            return Capacity("floating", 4)
        if name in TEXT_BYTES:  # characters of utf8mb4 take up to 4 bytes
            return Capacity("text", TEXT_BYTES[name] // 4)
        if name in BLOB_BYTES:
            return Capacity("binary", BLOB_BYTES[name])
        if name == "DATETIME":
            return Capacity("datetime", a or 0)
        return None

    @classmethod
    def sequence_type(cls, width: int) -> TypeEngine[Any]:
        return mysql.DECIMAL(width, 0)

    @classmethod
    def exact_string_type(cls, dialect: SQLDialect, length: int) -> TypeEngine[Any]:
        return mysql.VARCHAR(length, charset="utf8mb4", collation=exact_collation(dialect))

    @classmethod
    def utc_datetime_type(cls) -> TypeEngine[Any]:
        # DATETIME has no zone (and no fractions unless asked): naive UTC, microseconds.
        return mysql.DATETIME(fsp=6)

    @classmethod
    def numbers_as_text(cls, precision: int | None) -> bool:
        return precision is None or precision > MAX_DECIMAL_DIGITS

    @classmethod
    def exact_number_type(
        cls, dialect: SQLDialect, precision: int | None, scale: int | None, key: bool
    ) -> TypeEngine[Any]:
        if not cls.numbers_as_text(precision):
            return mysql.DECIMAL(precision, scale or 0)
        # A key needs a bounded length on MySQL; 160 characters hold any DynamoDB number.
        # Compared exactly, like every key column (ExactString).
        if key:
            return ExactString(160).load_dialect_impl(dialect)
        return mysql.LONGTEXT()

    # --- replica tables -----------------------------------------------------------------

    def key_type(self, tag: str) -> TypeEngine[Any]:
        types: dict[str, TypeEngine[Any]] = {
            "S": ExactString(KEY_CHARS),
            "N": ExactNumber(key=True),
            "B": mysql.VARBINARY(KEY_CHARS),
        }
        return types[tag]

    def column_type(self, ctype: ColumnType, key: bool) -> TypeEngine[Any]:
        if ctype.kind == "text":
            return ExactString(KEY_CHARS) if key else mysql.LONGTEXT()
        if ctype.kind == "bytea":
            return mysql.VARBINARY(KEY_CHARS) if key else mysql.LONGBLOB()
        return super().column_type(ctype, key)

    def table_options(self) -> dict[str, str]:
        return dict(TABLE_OPTIONS)

    def insert(self, table: Table) -> Insert:
        return mysql_insert(table)

    def ensure_schema(self, conn: Connection, schema: str) -> None:
        conn.execute(CreateSchema(schema, if_not_exists=True))

    def merge(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]] | None,
        assign: Assign,
        guard: Guard | None = None,
        conflict: Sequence[str] | None = None,
    ) -> Insert:
        # ON DUPLICATE KEY fires on any unique key: `conflict` needs no spelling here.
        stmt = mysql_insert(table) if rows is None else mysql_insert(table).values(list(rows))
        new = stmt.inserted
        assignments = dict(assign(new))
        if guard is None:
            return stmt.on_duplicate_key_update(assignments)
        condition = guard(new)
        read_by_guard = {
            element.name
            for element in visitors.iterate(condition)
            if isinstance(element, Column) and element.table is table
        }
        ordered = sorted(assignments.items(), key=lambda item: item[0] in read_by_guard)
        return stmt.on_duplicate_key_update(
            [(name, case((condition, value), else_=table.c[name])) for name, value in ordered]
        )

    def _upsert(
        self,
        conn: Connection,
        spec: ReplicaSpec,
        rows: Sequence[RowVersion],
        value_names: Sequence[str],
        applied_at: datetime,
    ) -> int:
        stored = self._stored_sequences(conn, spec, rows)
        newer = [r for r in rows if stored.get(r.key, -1) < r.sequence]
        # Each chunk is one executemany of the compiled one-row upsert; pymysql rewrites
        # it into multi-row `INSERT … VALUES (…), (…) ON DUPLICATE KEY UPDATE` statements
        # of at most its max_stmt_length (1 MB) each.
        for chunk in _chunks(newer, value_names):
            super()._upsert(conn, spec, chunk, value_names, applied_at)
        return len(newer)

    def _stored_sequences(
        self, conn: Connection, spec: ReplicaSpec, rows: Sequence[RowVersion]
    ) -> dict[tuple[Any, ...], int]:
        """The stored `_cdc_seq` of the rows' keys, locking those rows in key order."""
        table = spec.table
        key_columns = [table.c[name] for name in spec.key_names]
        found: dict[tuple[Any, ...], int] = {}
        for start in range(0, len(rows), MAX_ROWS):
            keys = [r.key for r in rows[start : start + MAX_ROWS]]
            query = (
                select(*key_columns, table.c[SEQ])
                .where(keys_in(key_columns, keys))
                .order_by(*key_columns)
                .with_for_update()
            )
            for row in conn.execute(query):
                found[tuple(row[:-1])] = int(row[-1])
        return found

    def rows_per_statement(self, table: Table) -> int:
        return min(MAX_ROWS, super().rows_per_statement(table))

    def upgrade_table(self, conn: Connection, table: Table) -> list[str]:
        try:
            return upgrade_table(conn, table.schema, table.name, lock_wait_s=UPGRADE_LOCK_WAIT_S)
        except Exception as exc:
            if classify(exc) is ErrorKind.TRANSIENT:
                raise
            # Most likely a role without ALTER: say what is wrong and how to fix it.
            raise UpgradeNeeded(
                f"replica table {table.fullname!r} was made by an earlier cdc and compares "
                "keys with a PAD SPACE collation (`sp` = `sp `); converting it failed: "
                f"{describe(exc)[1]}; run `cdc migrate` as a user allowed to ALTER it"
            ) from exc


def _chunks(rows: Sequence[RowVersion], value_names: Sequence[str]) -> Iterator[list[RowVersion]]:
    """Split rows so one statement stays under the packet limit (items reach 400 KB)."""
    chunk: list[RowVersion] = []
    size = 0
    for row in rows:
        row_size = 200 + sum(
            len(v) if isinstance(v, str | bytes) else 16
            for v in (row.values or {}).values()
            if v is not None
        )
        if chunk and (size + row_size > MAX_STATEMENT_BYTES or len(chunk) >= MAX_ROWS):
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += row_size
    if chunk:
        yield chunk


@compiles(JsonDocument, "mysql")
@compiles(JsonDocument, "mariadb")
def _json_ddl(type_: JsonDocument, compiler: TypeCompiler, **kw: Any) -> str:
    # MariaDB's JSON is LONGTEXT plus CHECK (JSON_VALID(...)), and JSON_VALID rejects
    # documents nested deeper than 32 levels: a DynamoDB item may nest 32 levels below
    # its attributes, so it would be refused. cdc writes valid JSON itself; the column is
    # plain LONGTEXT (MariaDB's JSON functions work on it all the same).
    if getattr(compiler.dialect, "is_mariadb", False) or compiler.dialect.name == "mariadb":
        return "LONGTEXT"
    return "JSON"


BACKEND = MySQLBackend

__all__ = ["BACKEND", "MySQLBackend", "UpgradeNeeded", "owned_tables", "upgrade_table"]
