"""Settings from environment variables and an optional TOML file, validated once.

This is the one place that reads cdc's environment variables (the README's
Configuration table): every other module takes the validated values from `Settings`.
Environment variables (the Lambda way) override the file named by `CDC_CONFIG`. Every
error names the variable and what it accepts, or the file, table and key, that is
wrong. Passwords never appear in messages: URLs are shown with the password masked.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from cdc.core.convert import TIME_FORMATS, parse_type
from cdc.core.errors import ConfigError
from cdc.core.mapping import (
    ColumnConfig,
    Deletes,
    NulPolicy,
    TableConfig,
    TableOptions,
    TtlDeletes,
    Unmapped,
)
from cdc.core.naming import fit, snake

DEFAULT_CLI_URL = "sqlite:///cdc.db"

# The environment variables, as the README's Configuration table lists them.
DATABASE_URL = "CDC_DATABASE_URL"
SECRET_ARN = "CDC_DATABASE_SECRET_ARN"  # noqa: S105 (a variable name)
IAM_AUTH = "CDC_DATABASE_IAM_AUTH"
SSLMODE = "CDC_DATABASE_SSLMODE"
SSLROOTCERT = "CDC_DATABASE_SSLROOTCERT"
DISABLE_PREPARED = "CDC_DATABASE_DISABLE_PREPARED"
HOST = "CDC_DATABASE_HOST"
PORT = "CDC_DATABASE_PORT"
NAME = "CDC_DATABASE_NAME"
SCHEMA = "CDC_SCHEMA"
CONFIG = "CDC_CONFIG"
LOG_LEVEL = "CDC_LOG_LEVEL"
METRICS = "CDC_METRICS"
METRICS_NAMESPACE = "CDC_METRICS_NAMESPACE"
# The `service` of the handler's log line, named as Powertools' Logger names it.
SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MetricsMode = Literal["emf", "off"]
METRICS_MODES: tuple[MetricsMode, ...] = get_args(MetricsMode)
DEFAULT_SERVICE = "cdc"
DEFAULT_NAMESPACE = "cdc"
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
# CloudWatch's rule for namespaces: these ASCII characters, at most 255, not all
# spaces; "AWS/" is reserved for AWS's own.
_NAMESPACE = re.compile(r"[0-9A-Za-z._/#: -]{1,255}")

# Users write what psql and mysql accept; SQLAlchemy needs the driver spelled out.
_DRIVER_DEFAULTS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_SUPPORTED_BACKENDS = ("postgresql", "sqlite", "mysql", "mariadb")

_TOP_LEVEL_KEYS = {"database_url", "schema", "migrations", "defaults", "tables"}
_OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "deletes": get_args(Deletes),
    "ttl_deletes": get_args(TtlDeletes),
    "nul": get_args(NulPolicy),
}
_OPTION_KEYS = {f.name for f in fields(TableOptions)}
_TABLE_KEYS = _OPTION_KEYS | {"table", "schema", "keys", "columns", "unmapped"}
_COLUMN_KEYS = {"type", "column", "required", "format"}
# Types a primary key column can have on every supported database.
_KEY_KINDS = {"text", "numeric", "bigint", "integer", "smallint", "bytea", "date", "timestamptz"}


@dataclass(frozen=True)
class DatabaseOptions:
    """How to connect, beyond the URL (see cdc/sql/credentials.py): RDS IAM tokens, TLS,
    prepared statements, and the endpoint that overrides the secret's."""

    iam_auth: bool = False
    sslmode: str | None = None
    sslrootcert: str | None = None
    disable_prepared: bool = False
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    region: str | None = None  # of the RDS IAM tokens: AWS_REGION


@dataclass(frozen=True)
class Settings:
    database_url: URL | None = None
    secret_arn: str | None = None
    schema: str | None = None
    config_path: Path | None = None
    defaults: TableOptions = field(default_factory=TableOptions)
    tables: Mapping[str, TableConfig] = field(default_factory=dict)
    database: DatabaseOptions = field(default_factory=DatabaseOptions)
    log_level: str = "INFO"
    metrics: MetricsMode = "emf"
    metrics_namespace: str = DEFAULT_NAMESPACE
    service: str = DEFAULT_SERVICE
    # The user's alembic revisions of the mapping (`cdc revision`): CDC_MIGRATIONS_DIR,
    # or `migrations` in the mapping file, relative to that file.
    migrations_dir: Path | None = None

    def options_for(self, source_table: str) -> TableOptions:
        config = self.tables.get(source_table)
        return self.defaults if config is None else config.options

    def names_for(self, source_table: str) -> tuple[str | None, str | None]:
        """The configured target (table, schema) of a source table, if any."""
        config = self.tables.get(source_table)
        return (None, None) if config is None else (config.table, config.schema)

    @property
    def has_database(self) -> bool:
        return self.database_url is not None or self.secret_arn is not None

    def masked_url(self) -> str:
        if self.database_url is None:
            return f"the database in {self.secret_arn}" if self.secret_arn else "(none)"
        return self.database_url.render_as_string(hide_password=True)


def parse_database_url(value: str, setting: str) -> URL:
    try:
        url = make_url(value.strip())
    except (ArgumentError, ValueError):  # ValueError: a bad port, an unclosed [ipv6
        # The raw value may hold a password: say what is wrong without echoing it.
        raise ConfigError(
            f"{setting} is not a database URL; expected e.g. "
            "postgresql+psycopg://user:password@host:5432/dbname or sqlite:///cdc.db"
        ) from None
    driver = _DRIVER_DEFAULTS.get(url.drivername)
    if driver is not None:
        url = url.set(drivername=driver)
    if url.get_backend_name() not in _SUPPORTED_BACKENDS:
        raise ConfigError(
            f"{setting} names database {url.get_backend_name()!r}; cdc supports "
            "postgresql, sqlite and mysql/mariadb"
        )
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(
            f"{setting} names driver {url.drivername!r}, which is not available; use "
            "postgresql+psycopg, sqlite or mysql+pymysql"
        ) from None
    return url


def load_settings(
    environ: Mapping[str, str] | None = None, *, default_url: str | None = None
) -> Settings:
    """Read and validate the configuration. `default_url` is used when nothing names a
    database (the CLI's local SQLite default); the Lambda handler passes none.

    Every variable of the README's Configuration table is read here and nowhere else,
    so a bad value fails at start-up (the CLI's first line, the handler's first
    invocation) whether or not the code that uses it would run. An empty variable
    counts as unset."""
    env = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    config_path: Path | None = None
    config_text = _env(env, CONFIG)
    if config_text is not None:
        config_path = Path(config_text)
        file_values = _read_toml(config_path)

    url_text = _env(env, DATABASE_URL)
    url_setting = DATABASE_URL
    secret_arn = _env(env, SECRET_ARN)
    if url_text is not None and secret_arn is not None:
        raise ConfigError(f"set either {DATABASE_URL} or {SECRET_ARN}, not both")
    if url_text is None and "database_url" in file_values and secret_arn is None:
        url_text = _expect(file_values["database_url"], str, config_path, "database_url")
        url_setting = f"{config_path}: database_url"
    if secret_arn is not None and not secret_arn.startswith("arn:"):
        raise ConfigError(f"{SECRET_ARN} must be a Secrets Manager ARN (arn:aws:secretsmanager:…)")
    if url_text is None and secret_arn is None and default_url is not None:
        url_text, url_setting = default_url, "the default database URL"
    url = parse_database_url(url_text, url_setting) if url_text is not None else None
    database = _database_options(env, secret_arn)
    if url is not None:
        check_database_options(database, url.get_backend_name())

    schema = _env(env, SCHEMA)
    if schema is None and "schema" in file_values:
        schema = _expect(file_values["schema"], str, config_path, "schema")
    if schema is not None and url is not None and url.get_backend_name() == "sqlite":
        raise ConfigError(f"{SCHEMA} is not supported with SQLite (it has no schemas)")

    migrations_dir = Path(env["CDC_MIGRATIONS_DIR"]) if env.get("CDC_MIGRATIONS_DIR") else None
    if migrations_dir is None and "migrations" in file_values and config_path is not None:
        relative = _expect(file_values["migrations"], str, config_path, "migrations")
        migrations_dir = config_path.parent / relative

    defaults = _options(file_values.get("defaults", {}), TableOptions(), config_path, "defaults")
    tables: dict[str, TableConfig] = {}
    raw_tables = file_values.get("tables", {})
    if not isinstance(raw_tables, dict):
        raise ConfigError(f"{config_path}: 'tables' must be a table of source tables")
    targets: dict[tuple[str | None, str], str] = {}
    for source, raw in raw_tables.items():
        config = _table(source, raw, defaults, config_path)
        target = (config.schema or schema, fit(config.table or snake(source), 63, source))
        other = targets.setdefault(target, source)
        if other != source:
            raise ConfigError(
                f"{config_path}: [tables.{source}] and [tables.{other}] both map to the "
                f"table {'.'.join(p for p in target if p)!r}; set `table` on one of them"
            )
        tables[source] = config

    metrics: MetricsMode = "off" if _choice(env, METRICS, METRICS_MODES) == "off" else "emf"
    return Settings(
        database_url=url,
        secret_arn=secret_arn,
        schema=schema,
        config_path=config_path,
        defaults=defaults,
        tables=tables,
        database=database,
        log_level=_choice(env, LOG_LEVEL, LOG_LEVELS, default="INFO"),
        metrics=metrics,
        metrics_namespace=_namespace(env),
        service=_env(env, SERVICE_NAME) or DEFAULT_SERVICE,
        migrations_dir=migrations_dir,
    )


# --- environment variables ------------------------------------------------------------


def _env(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value, stripped; empty counts as unset (a template's blank
    parameter, `VAR=` in a shell)."""
    value = env.get(name, "").strip()
    return value or None


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = _env(env, name)
    if value is None:
        return False
    flag = _BOOLEANS.get(value.lower())
    if flag is None:
        raise ConfigError(
            f"{name}={value!r} is not a boolean; expected one of {', '.join(_BOOLEANS)} (any case)"
        )
    return flag


def _choice(
    env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str | None = None
) -> str:
    """One of `choices`, in any case, or `default` (the first choice) when unset."""
    value = _env(env, name)
    if value is None:
        return default or choices[0]
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ConfigError(
        f"{name}={value!r} is not valid; expected one of {', '.join(choices)} (any case)"
    )


def _namespace(env: Mapping[str, str]) -> str:
    value = _env(env, METRICS_NAMESPACE)
    if value is None:
        return DEFAULT_NAMESPACE
    if _NAMESPACE.fullmatch(value) is None or value.startswith("AWS/"):
        raise ConfigError(
            f"{METRICS_NAMESPACE}={value!r} is not a CloudWatch namespace; expected 1 to 255 "
            "of the characters A-Z a-z 0-9 . - _ / # : and space, not starting with AWS/"
        )
    return value


def parse_port(value: object, where: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ConfigError(f"{where} must be a port number (1-65535), got {value!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{where} must be a port number (1-65535), got {port}")
    return port


def _database_options(env: Mapping[str, str], secret_arn: str | None) -> DatabaseOptions:
    iam_auth = _flag(env, IAM_AUTH)
    sslmode = _env(env, SSLMODE)
    if sslmode is not None:
        sslmode = _choice(env, SSLMODE, SSLMODES)
    if iam_auth and sslmode is None:
        sslmode = "require"  # RDS IAM authentication needs TLS
    if iam_auth and sslmode in ("disable", "allow"):
        raise ConfigError(
            f"{IAM_AUTH}=true needs TLS, but {SSLMODE}={sslmode}; use require or verify-full"
        )
    sslrootcert = _env(env, SSLROOTCERT)
    if sslrootcert not in (None, "system") and not Path(sslrootcert).is_file():
        raise ConfigError(
            f"{SSLROOTCERT} names {sslrootcert}, which is not a file; expected the path of "
            "a CA bundle, or system"
        )
    if sslmode in ("verify-ca", "verify-full") and sslrootcert is None:
        raise ConfigError(
            f"{SSLMODE}={sslmode} needs {SSLROOTCERT}: the CA bundle to verify the "
            "server with (for RDS, the global bundle, shipped in the package)"
        )
    host, dbname = _env(env, HOST), _env(env, NAME)
    port_text = _env(env, PORT)
    port = parse_port(port_text, PORT) if port_text is not None else None
    if secret_arn is None:
        for name, value in ((HOST, host), (PORT, port), (NAME, dbname)):
            if value is not None:
                raise ConfigError(
                    f"{name} applies with {SECRET_ARN} only; put the host, port and "
                    f"database in {DATABASE_URL}"
                )
    region = _env(env, "AWS_REGION") or _env(env, "AWS_DEFAULT_REGION")
    if iam_auth and region is None:
        raise ConfigError(f"{IAM_AUTH}=true needs the AWS region: set AWS_REGION")
    return DatabaseOptions(
        iam_auth=iam_auth,
        sslmode=sslmode,
        sslrootcert=sslrootcert,
        disable_prepared=_flag(env, DISABLE_PREPARED),
        host=host,
        port=port,
        dbname=dbname,
        region=region,
    )


def check_database_options(options: DatabaseOptions, backend: str) -> None:
    """The connection options that cannot apply to `backend` (SQLAlchemy's backend
    name). Checked at load time when the URL is known, and again once a secret has
    named the database engine."""
    if backend in ("postgresql", "mysql", "mariadb"):
        if (
            backend != "postgresql"
            and options.sslmode in ("verify-ca", "verify-full")
            and options.sslrootcert == "system"
        ):
            raise ConfigError(f"{SSLROOTCERT}=system is not supported with MySQL; name the file")
        return
    if options.iam_auth:
        raise ConfigError(f"{IAM_AUTH} needs a PostgreSQL or MySQL database, not {backend}")
    for name, value in ((SSLMODE, options.sslmode), (SSLROOTCERT, options.sslrootcert)):
        if value is not None:
            raise ConfigError(f"{name} does not apply to {backend}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{CONFIG} names {path}, which does not exist") from None
    except OSError as exc:  # a directory, no permission
        raise ConfigError(f"{CONFIG} names {path}, which cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG} file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise ConfigError(
            f"{CONFIG} file {path} is not valid TOML: not UTF-8 at byte {exc.start}"
        ) from None
    unknown = set(values) - _TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_TOP_LEVEL_KEYS))}"
        )
    return values


def _expect(value: Any, kind: type, path: Path | None, key: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{path}: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _table(source: str, raw: Any, defaults: TableOptions, path: Path | None) -> TableConfig:
    where = f"tables.{source}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{where}] must be a table of settings")
    unknown = set(raw) - _TABLE_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: [{where}] has unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_TABLE_KEYS))}"
        )
    options = _options({k: v for k, v in raw.items() if k in _OPTION_KEYS}, defaults, path, where)
    table = raw.get("table")
    schema = raw.get("schema")
    for key, value in (("table", table), ("schema", schema)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{path}: [{where}] {key} must be a non-empty string, got {value!r}")
    unmapped = raw.get("unmapped", "extra")
    if unmapped not in ("extra", "drop"):
        raise ConfigError(f"{path}: [{where}] unmapped = {unmapped!r}; expected 'extra' or 'drop'")
    keys = raw.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"{path}: [{where}] keys must be a list of attribute names, got {keys!r}")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{path}: [{where}] keys lists an attribute twice: {keys!r}")
    raw_columns = raw.get("columns", {})
    if not isinstance(raw_columns, dict):
        raise ConfigError(f"{path}: [{where}.columns] must be a table of attribute = type")
    columns = tuple(_column(attr, spec, path, where) for attr, spec in raw_columns.items())
    if columns and not keys:
        raise ConfigError(
            f"{path}: [{where}] has columns but no keys; list the key attributes in `keys`"
        )
    if keys and not columns:
        raise ConfigError(
            f"{path}: [{where}] has keys but no columns; declare each key attribute's "
            f"type in [{where}.columns]"
        )
    by_attribute = {c.attribute: c for c in columns}
    for key in keys:
        column = by_attribute.get(key)
        if column is None:
            raise ConfigError(f"{path}: [{where}] key {key!r} is not declared in [{where}.columns]")
        if column.type.kind not in _KEY_KINDS:
            raise ConfigError(
                f"{path}: [{where}.columns] {key} is a key and cannot be {column.type}; "
                f"key columns can be {', '.join(sorted(_KEY_KINDS))}"
            )
        if "." in key:
            raise ConfigError(f"{path}: [{where}] key {key!r} must be a top-level attribute")
    unmapped_value: Unmapped = unmapped
    return TableConfig(
        source=source,
        options=options,
        table=table,
        schema=schema,
        keys=tuple(keys),
        columns=tuple(
            ColumnConfig(
                c.attribute, c.column, c.type, c.required or c.attribute in keys, c.time_format
            )
            for c in columns
        ),
        unmapped=unmapped_value,
    )


def _column(attribute: str, spec: Any, path: Path | None, where: str) -> ColumnConfig:
    here = f"{path}: [{where}.columns] {attribute}"
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ConfigError(
            f'{here} must be a type ("numeric(12,2)") or an inline table {{ type = ... }}'
        )
    unknown = set(spec) - _COLUMN_KEYS
    if unknown:
        raise ConfigError(
            f"{here} has unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_COLUMN_KEYS))}"
        )
    if "type" not in spec:
        raise ConfigError(f"{here} has no type")
    try:
        ctype = parse_type(str(spec["type"]))
    except ValueError as exc:
        raise ConfigError(f"{here}: {exc}") from None
    column = spec.get("column", snake(attribute))
    if not isinstance(column, str) or not column:
        raise ConfigError(f"{here}: column must be a non-empty string")
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise ConfigError(f"{here}: required must be true or false")
    time_format = spec.get("format", "auto")
    if time_format not in TIME_FORMATS:
        raise ConfigError(
            f"{here}: format = {time_format!r}; expected one of {', '.join(TIME_FORMATS)}"
        )
    if time_format != "auto" and ctype.kind != "timestamptz":
        raise ConfigError(f"{here}: format only applies to timestamptz columns")
    if any(not part for part in attribute.split(".")):
        raise ConfigError(f"{here}: not an attribute path (Name or Parent.Child)")
    return ColumnConfig(attribute, column, ctype, required, time_format)


def _options(raw: Any, base: TableOptions, path: Path | None, where: str) -> TableOptions:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [{where}] must be a table of options")
    unknown = set(raw) - _OPTION_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: [{where}] has unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_OPTION_KEYS))}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        choices = _OPTION_CHOICES.get(key)
        if choices is not None and value not in choices:
            raise ConfigError(
                f"{path}: [{where}] {key} = {value!r}; "
                f"expected one of {', '.join(map(repr, choices))}"
            )
        if choices is None and not isinstance(value, bool):
            raise ConfigError(f"{path}: [{where}] {key} must be true or false, got {value!r}")
        values[key] = value
    current = {f.name: getattr(base, f.name) for f in fields(TableOptions)}
    current.update(values)
    return TableOptions(**current)
