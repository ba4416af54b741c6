"""Database credentials and connection options for running on AWS.

What the configuration can ask for, on top of a plain `CDC_DATABASE_URL` (cdc.config
reads and validates these variables; this module takes them from `Settings`):

* `CDC_DATABASE_SECRET_ARN`: a Secrets Manager secret in the RDS JSON format
  (`username`, `password`, `host`, `port`, `dbname`, `engine`). It is fetched once per
  process (a warm Lambda container keeps it) and fetched again after the database
  rejects it: Secrets Manager rotated the password. `CDC_DATABASE_HOST`,
  `CDC_DATABASE_PORT` and `CDC_DATABASE_NAME` override (or supply) the secret's host,
  port and dbname: RDS-managed master secrets hold only username and password, and a
  connection through RDS Proxy uses the proxy's endpoint, not the instance's.
* `CDC_DATABASE_IAM_AUTH=true`: RDS IAM authentication. The password is a token from
  `rds.generate_db_auth_token` (a local signature, no network call), valid 15 minutes
  and renewed after 10. Connections already open outlive their token; only new ones
  need a fresh one. IAM authentication needs TLS, so sslmode defaults to `require`.
* `CDC_DATABASE_SSLMODE` (libpq's modes) and `CDC_DATABASE_SSLROOTCERT` (a CA bundle
  file, e.g. the RDS global bundle shipped in the Lambda package).
* `CDC_DATABASE_DISABLE_PREPARED=true`: no server-side prepared statements, for RDS
  Proxy (prepared statements pin a client to one database connection) and PgBouncer in
  transaction mode (a prepared statement lives on a server connection the next
  transaction may not get).

Everything happens in one SQLAlchemy `do_connect` listener, so a connection the pool
makes after a rotation, a token expiry or a failover gets current credentials.
boto3 is imported only when a secret or IAM authentication is configured, and only
when first needed. Passwords and tokens are never logged nor put in messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

from cdc.config import (
    DATABASE_URL,
    IAM_AUTH,
    SECRET_ARN,
    DatabaseOptions,
    Settings,
    check_database_options,
)
from cdc.core.errors import ConfigError
from cdc.sql.backends.registry import backend_class, backends
from cdc.sql.secrets import (
    Clock,
    DatabaseSecret,
    SecretCache,
    SecretFetcher,
    TokenCache,
    TokenGenerator,
    default_port,
    url_from_secret,
)

log = logging.getLogger("cdc")


def is_auth_failure(error: BaseException) -> bool:
    """The database rejected the credentials (rather than being unreachable), as one of
    the backends tells from the driver's error (Backend.is_auth_failure)."""
    error = getattr(error, "orig", None) or error
    return any(b.is_auth_failure(error) for b in backends())


def engine_options(options: DatabaseOptions, backend: str) -> dict[str, Any]:
    """The driver's connect args for TLS and prepared statements on `backend`
    (SQLAlchemy's backend name: postgresql, mysql, mariadb, sqlite)."""
    check_database_options(options, backend)
    return backend_class(backend).connect_args(options)


# --- caches ----------------------------------------------------------------------------


# --- the connect hook ------------------------------------------------------------------


class Credentials:
    """Fills in the connect parameters of each new connection (a `do_connect` listener)
    and forgets the secret or token the database rejected."""

    def __init__(
        self,
        backend: str,
        *,
        secret: SecretCache | None = None,
        tokens: TokenCache | None = None,
        host: str | None = None,
        port: int | None = None,
        dbname: str | None = None,
    ) -> None:
        self.backend = backend
        self.secret = secret
        self.tokens = tokens
        self._overrides = {"host": host, "port": port, "dbname": dbname}
        self._dbname_key = backend_class(backend).connect_database_key

    def apply(self, cparams: dict[str, Any]) -> DatabaseSecret | None:
        """Set user, password, host, port and database in `cparams`; returns the secret
        used, if any."""
        used: DatabaseSecret | None = None
        if self.secret is not None:
            used = self.secret.get()
            cparams["user"] = used.username
            if used.password is not None:
                cparams["password"] = used.password
            for key, value in (("host", used.host), ("port", used.port), ("dbname", used.dbname)):
                if value is not None:
                    cparams[self._key(key)] = value
        for key, value in self._overrides.items():
            if value is not None:
                cparams[self._key(key)] = value
        if self.tokens is not None:
            host, user = cparams.get("host"), cparams.get("user")
            if not host or not user:
                raise ConfigError(
                    f"{IAM_AUTH}=true needs the database host and user (in CDC_DATABASE_URL "
                    f"or the secret {SECRET_ARN})"
                )
            port = int(cparams.get("port") or default_port(self.backend) or 0)
            cparams["password"] = self.tokens.get(str(host), port, str(user))
        return used

    def _key(self, key: str) -> str:
        return self._dbname_key if key == "dbname" else key

    def do_connect(
        self, dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> Any:
        used = self.apply(cparams)
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            if not is_auth_failure(exc):
                raise
            if self.tokens is not None:
                log.warning(
                    "the database rejected the IAM token for user %s; making a new one",
                    cparams.get("user"),
                )
                self.tokens.invalidate()
            if self.secret is not None:
                log.warning(
                    "the database rejected user %s; fetching the secret %s again on the next "
                    "connection attempt (rotated?)",
                    cparams.get("user"),
                    self.secret.arn,
                )
                self.secret.invalidate(used)
            raise


def attach(engine: Engine, credentials: Credentials) -> None:
    """Install `credentials` as the engine's connect hook. It makes the connection
    itself (to see authentication failures), so attach it after other `do_connect`
    listeners."""
    event.listen(engine, "do_connect", credentials.do_connect)


@dataclass(frozen=True)
class DatabaseAccess:
    """Everything to build an engine for the configured database: its URL (without a
    password when one comes from a secret or a token), the driver's connect args, and
    the connect hook, if any."""

    url: URL
    connect_args: Mapping[str, Any]
    credentials: Credentials | None
    options: DatabaseOptions

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        fetch_secret: SecretFetcher | None = None,
        generate_token: TokenGenerator | None = None,
        clock: Clock = time.time,
    ) -> DatabaseAccess:
        """The database `settings` name: their URL, or their secret (fetched here, once:
        the hook reuses it), with their connection options."""
        url, options = settings.database_url, settings.database
        secret: SecretCache | None = None
        if url is None:
            if settings.secret_arn is None:
                raise ConfigError(f"no database configured: set {DATABASE_URL} or {SECRET_ARN}")
            secret = SecretCache(
                settings.secret_arn,
                fetch_secret,
                require_password=not options.iam_auth,
                require_host=options.host is None,
            )
            url = url_from_secret(secret.get(), include_password=False)
            url = url.set(
                host=options.host or url.host,
                port=options.port or url.port,
                database=options.dbname or url.database,
            )
        elif settings.secret_arn is not None:
            raise ConfigError(f"set either {DATABASE_URL} or {SECRET_ARN}, not both")
        backend = url.get_backend_name()
        tokens: TokenCache | None = None
        if options.iam_auth:
            if options.region is None:
                raise ConfigError(f"{IAM_AUTH}=true needs the AWS region: set AWS_REGION")
            tokens = TokenCache(options.region, generate_token, clock=clock)
            url = url.set(password=None)
        connect_args = engine_options(options, backend)
        credentials = None
        if secret is not None or tokens is not None:
            credentials = Credentials(
                backend,
                secret=secret,
                tokens=tokens,
                host=options.host,
                port=options.port,
                dbname=options.dbname,
            )
        return cls(url, connect_args, credentials, options)

    def attach(self, engine: Engine) -> None:
        if self.credentials is not None:
            attach(engine, self.credentials)
