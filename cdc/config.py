"""Settings from environment variables and an optional TOML file, validated once.

Environment variables (the Lambda way) override the file named by `CDC_CONFIG`. Every
error names the variable, or the file, table and key, that is wrong. Passwords never
appear in messages: URLs are shown with the password masked.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from cdc.errors import ConfigError
from cdc.mapping import Deletes, NulPolicy, TableOptions, TtlDeletes

DEFAULT_CLI_URL = "sqlite:///cdc.db"

# Users write what psql and mysql accept; SQLAlchemy needs the driver spelled out.
_DRIVER_DEFAULTS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_SUPPORTED_BACKENDS = ("postgresql", "sqlite", "mysql", "mariadb")

_TOP_LEVEL_KEYS = {"database_url", "schema", "defaults", "tables"}
_OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "deletes": get_args(Deletes),
    "ttl_deletes": get_args(TtlDeletes),
    "nul": get_args(NulPolicy),
}
_OPTION_KEYS = {f.name for f in fields(TableOptions)}


@dataclass(frozen=True)
class Settings:
    database_url: URL | None = None
    secret_arn: str | None = None
    schema: str | None = None
    config_path: Path | None = None
    defaults: TableOptions = field(default_factory=TableOptions)
    tables: Mapping[str, TableOptions] = field(default_factory=dict)

    def options_for(self, source_table: str) -> TableOptions:
        return self.tables.get(source_table, self.defaults)

    @property
    def has_database(self) -> bool:
        return self.database_url is not None or self.secret_arn is not None

    def masked_url(self) -> str:
        if self.database_url is None:
            return "(none)"
        return self.database_url.render_as_string(hide_password=True)


def parse_database_url(value: str, setting: str) -> URL:
    try:
        url = make_url(value.strip())
    except ArgumentError:
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
    return url


def load_settings(
    environ: Mapping[str, str] | None = None, *, default_url: str | None = None
) -> Settings:
    """Read and validate the configuration. `default_url` is used when nothing names a
    database (the CLI's local SQLite default); the Lambda handler passes none."""
    env = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    config_path: Path | None = None
    if env.get("CDC_CONFIG"):
        config_path = Path(env["CDC_CONFIG"])
        file_values = _read_toml(config_path)

    url_text = env.get("CDC_DATABASE_URL") or None
    url_setting = "CDC_DATABASE_URL"
    if url_text is None and "database_url" in file_values:
        url_text = _expect(file_values["database_url"], str, config_path, "database_url")
        url_setting = f"{config_path}: database_url"
    secret_arn = env.get("CDC_DATABASE_SECRET_ARN") or None
    if url_text is not None and secret_arn is not None and env.get("CDC_DATABASE_URL"):
        raise ConfigError(
            "set either CDC_DATABASE_URL or CDC_DATABASE_SECRET_ARN, not both"
        )
    if secret_arn is not None and not secret_arn.startswith("arn:"):
        raise ConfigError(
            "CDC_DATABASE_SECRET_ARN must be a Secrets Manager ARN (arn:aws:secretsmanager:…)"
        )
    if url_text is None and secret_arn is None and default_url is not None:
        url_text, url_setting = default_url, "the default database URL"
    url = parse_database_url(url_text, url_setting) if url_text is not None else None

    schema = env.get("CDC_SCHEMA") or None
    if schema is None and "schema" in file_values:
        schema = _expect(file_values["schema"], str, config_path, "schema")
    if schema is not None and url is not None and url.get_backend_name() == "sqlite":
        raise ConfigError("CDC_SCHEMA is not supported with SQLite (it has no schemas)")

    defaults = _options(file_values.get("defaults", {}), TableOptions(), config_path, "defaults")
    tables: dict[str, TableOptions] = {}
    raw_tables = file_values.get("tables", {})
    if not isinstance(raw_tables, dict):
        raise ConfigError(f"{config_path}: 'tables' must be a table of source tables")
    for source, raw in raw_tables.items():
        tables[source] = _options(raw, defaults, config_path, f"tables.{source}")

    return Settings(
        database_url=url,
        secret_arn=secret_arn,
        schema=schema,
        config_path=config_path,
        defaults=defaults,
        tables=tables,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            values = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"CDC_CONFIG names {path}, which does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"CDC_CONFIG file {path} is not valid TOML: {exc}") from None
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
                f"{path}: [{where}] {key} = {value!r}; expected one of {', '.join(map(repr, choices))}"
            )
        if choices is None and not isinstance(value, bool):
            raise ConfigError(f"{path}: [{where}] {key} must be true or false, got {value!r}")
        values[key] = value
    current = {f.name: getattr(base, f.name) for f in fields(TableOptions)}
    current.update(values)
    return TableOptions(**current)
