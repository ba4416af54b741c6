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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from cdc.config import databases
from cdc.config.mapping_file import _expect, _options, _read_toml, _table
from cdc.config.names import (
    CONFIG as CONFIG,
)
from cdc.config.names import (
    DATABASE_URL as DATABASE_URL,
)
from cdc.config.names import (
    DISABLE_PREPARED as DISABLE_PREPARED,
)
from cdc.config.names import HASH_KEY, HASH_KEY_SECRET_ARN
from cdc.config.names import (
    HOST as HOST,
)
from cdc.config.names import (
    IAM_AUTH as IAM_AUTH,
)
from cdc.config.names import (
    LOG_LEVEL as LOG_LEVEL,
)
from cdc.config.names import (
    METRICS as METRICS,
)
from cdc.config.names import (
    METRICS_NAMESPACE as METRICS_NAMESPACE,
)
from cdc.config.names import (
    NAME as NAME,
)
from cdc.config.names import (
    PORT as PORT,
)
from cdc.config.names import (
    SCHEMA as SCHEMA,
)
from cdc.config.names import (
    SECRET_ARN as SECRET_ARN,
)
from cdc.config.names import (
    SERVICE_NAME as SERVICE_NAME,
)
from cdc.config.names import (
    SSLMODE as SSLMODE,
)
from cdc.config.names import (
    SSLROOTCERT as SSLROOTCERT,
)
from cdc.core.errors import ConfigError
from cdc.core.mapping import (
    TableConfig,
    TableOptions,
)
from cdc.core.naming import fit, snake
from cdc.core.pii import HashKey

DEFAULT_CLI_URL = "sqlite:///cdc.db"


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
    # AWS_REGION (as Lambda sets it), else AWS_DEFAULT_REGION: the region of the AWS
    # clients when no ARN names one; None lets boto3 resolve it (~/.aws/config).
    region: str | None = None
    # The key of hashed attributes (CDC_HASH_KEY or CDC_HASH_KEY_SECRET_ARN).
    hash_key: HashKey | None = None

    @property
    def hashes(self) -> bool:
        """Whether some table of the mapping stores an attribute hashed."""
        return any(
            c.options.personal is not None and c.options.personal.hashed
            for c in self.tables.values()
        )

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
    # Users write what psql and mysql accept; SQLAlchemy needs the driver spelled out.
    driver = databases.url_drivers().get(url.drivername)
    if driver is not None:
        url = url.set(drivername=driver)
    known = databases.registered()
    if databases.facts_for(url.get_backend_name()) is None:
        supported = databases.listing(["/".join(f.names) for f in known])
        raise ConfigError(
            f"{setting} names database {url.get_backend_name()!r}; cdc supports {supported}"
        )
    try:
        url.get_dialect()
    except NoSuchModuleError:
        drivers = databases.listing([f.driver for f in known], "or")
        raise ConfigError(
            f"{setting} names driver {url.drivername!r}, which is not available; use {drivers}"
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
    facts = databases.facts_for(url.get_backend_name()) if url is not None else None
    if schema is not None and facts is not None and not facts.supports_schemas:
        raise ConfigError(f"{SCHEMA} is not supported with {facts.label} (it has no schemas)")

    migrations_dir = Path(env["CDC_MIGRATIONS_DIR"]) if env.get("CDC_MIGRATIONS_DIR") else None
    if migrations_dir is None and "migrations" in file_values and config_path is not None:
        relative = _expect(file_values["migrations"], str, config_path, "migrations")
        migrations_dir = config_path.parent / relative

    hash_key = _hash_key(env)
    defaults = _options(file_values.get("defaults", {}), TableOptions(), config_path, "defaults")
    tables: dict[str, TableConfig] = {}
    raw_tables = file_values.get("tables", {})
    if not isinstance(raw_tables, dict):
        raise ConfigError(f"{config_path}: 'tables' must be a table of source tables")
    targets: dict[tuple[str | None, str], str] = {}
    # Names are cut to the database's identifier limit (the smallest one, until a
    # secret names the database), as the replica's tables will be.
    limit = (
        facts.max_identifier_bytes
        if facts is not None
        else min(f.max_identifier_bytes for f in databases.registered())
    )
    for source, raw in raw_tables.items():
        config = _table(source, raw, defaults, config_path, hash_key)
        target = (config.schema or schema, fit(config.table or snake(source), limit, source))
        other = targets.setdefault(target, source)
        if other != source:
            raise ConfigError(
                f"{config_path}: [tables.{source}] and [tables.{other}] both map to the "
                f"table {'.'.join(p for p in target if p)!r}; set `table` on one of them"
            )
        tables[source] = config

    if hash_key.describe == "" and any(
        c.options.personal is not None and c.options.personal.hashed for c in tables.values()
    ):
        raise ConfigError(
            f'{config_path}: the mapping hashes attributes (hash = "hmac-sha256"): set '
            f"{HASH_KEY} to the key, or {HASH_KEY_SECRET_ARN} to a Secrets Manager secret "
            "holding it"
        )
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
        region=database.region,
        hash_key=hash_key,
    )


# --- environment variables ------------------------------------------------------------


def _hash_key(env: Mapping[str, str]) -> HashKey:
    """The key of hashed attributes: CDC_HASH_KEY (the key itself; never printed), or
    CDC_HASH_KEY_SECRET_ARN, read through Secrets Manager by the entry points
    (cdc/app/engines.py). An empty `describe`: none configured."""
    text, arn = _env(env, HASH_KEY), _env(env, HASH_KEY_SECRET_ARN)
    if text is not None and arn is not None:
        raise ConfigError(f"set either {HASH_KEY} or {HASH_KEY_SECRET_ARN}, not both")
    if text is not None:
        key = HashKey(HASH_KEY, lambda: text)
        key.get()  # at least 16 bytes: checked at start-up
        return key
    if arn is not None:
        if not arn.startswith("arn:"):
            raise ConfigError(f"{HASH_KEY_SECRET_ARN} must be a Secrets Manager ARN")
        return HashKey(f"{HASH_KEY_SECRET_ARN}={arn}", None, secret_arn=arn)
    return HashKey("", None)


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
    facts = databases.facts_for(backend)
    if facts is not None and facts.network:
        if (
            not facts.system_ca
            and options.sslmode in ("verify-ca", "verify-full")
            and options.sslrootcert == "system"
        ):
            raise ConfigError(
                f"{SSLROOTCERT}=system is not supported with {facts.label}; name the file"
            )
        return
    if options.iam_auth:
        remote = databases.listing([f.label for f in databases.registered() if f.network], "or")
        raise ConfigError(f"{IAM_AUTH} needs a {remote} database, not {backend}")
    for name, value in ((SSLMODE, options.sslmode), (SSLROOTCERT, options.sslrootcert)):
        if value is not None:
            raise ConfigError(f"{name} does not apply to {backend}")
