"""Database secrets (the RDS JSON format) and RDS IAM tokens: parsing, the URL a secret
names, and the caches the connect hook (cdc/sql/credentials.py) draws from. The AWS
sources (cdc/aws/credentials.py) are handed in."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL

from cdc.config import (
    HOST,
    IAM_AUTH,
    SECRET_ARN,
    databases,
    parse_port,
)
from cdc.core.errors import ConfigError
from cdc.sql.backends.registry import backend_class, backends

log = logging.getLogger("cdc")

# RDS IAM tokens are valid for 15 minutes; take a new one well before that, so a token
# is never used in its last minutes (clock skew, a slow connect).
TOKEN_RENEW_AFTER_S = 10 * 60


_SECRET_FORMAT = "the RDS JSON format: username, password, host, port, dbname, engine"  # noqa: S105


SecretFetcher = Callable[[str], str]
"""ARN → the secret's text (SecretString)."""


TokenGenerator = Callable[[str, int, str, str], str]
"""(host, port, user, region) → an RDS IAM authentication token."""


Clock = Callable[[], float]


@dataclass(frozen=True, repr=False)
class DatabaseSecret:
    username: str
    password: str | None
    host: str | None
    port: int | None
    dbname: str | None
    engine: str | None

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return (
            f"DatabaseSecret(username={self.username!r}, password=***, host={self.host!r}, "
            f"port={self.port!r}, dbname={self.dbname!r}, engine={self.engine!r})"
        )

    @property
    def drivername(self) -> str:
        return _driver_for(self.engine)


def _driver_for(engine: str | None) -> str:
    """The SQLAlchemy driver for an RDS secret's `engine` (Backend.secret_engines); a
    secret without one names cdc's first-class database (Backend.secret_default)."""
    if engine is None:
        return next(b.driver for b in backends() if b.secret_default)
    drivers = {name: d for b in backends() for name, d in b.secret_engines.items()}
    driver = drivers.get(engine.lower())
    if driver is None:
        raise ConfigError(
            f"the database secret names engine {engine!r}; cdc supports "
            f"{databases.listing(list(drivers))}"
        )
    return driver


def default_port(backend: str) -> int | None:
    """The port of the database a secret or URL names when neither says."""
    return backend_class(backend).default_port


def parse_secret(
    value: str | bytes | Mapping[str, Any],
    *,
    where: str = "the database secret",
    require_password: bool = True,
    require_host: bool = True,
) -> DatabaseSecret:
    """Read and check a secret in the RDS JSON format. Errors name the key that is
    missing or wrong and never echo the secret's text."""
    if isinstance(value, str | bytes):
        try:
            data = json.loads(value)
        except ValueError:
            raise ConfigError(f"{where} is not JSON; expected {_SECRET_FORMAT}") from None
    else:
        data = value
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} is not a JSON object; expected {_SECRET_FORMAT}")

    def text(key: str, required: bool, hint: str = "") -> str | None:
        raw = data.get(key)
        if raw is None or raw == "":
            if required:
                raise ConfigError(f"{where} has no {key!r}; expected {_SECRET_FORMAT}{hint}")
            return None
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: {key!r} must be a string")
        return raw

    username = text("username", True)
    assert username is not None
    password = text("password", require_password)
    host = text("host", require_host, f" (or set {HOST})")
    dbname = text("dbname", False)
    engine = text("engine", False)
    port_value = data.get("port")
    port: int | None = None
    if port_value is not None and port_value != "":
        port = parse_port(port_value, f"{where}: 'port'")
    _driver_for(engine)  # an unsupported engine is an error now, not at the first connect
    return DatabaseSecret(username, password, host, port, dbname, engine)


def url_from_secret(
    secret: str | bytes | Mapping[str, Any] | DatabaseSecret,
    driver: str | None = None,
    *,
    include_password: bool = True,
) -> URL:
    """The SQLAlchemy URL a secret describes: its engine's driver (engine "postgres" →
    postgresql+psycopg, Backend.secret_engines), unless `driver` names one."""
    if not isinstance(secret, DatabaseSecret):
        secret = parse_secret(secret)
    drivername = driver or secret.drivername
    return URL.create(
        drivername,
        username=secret.username,
        password=secret.password if include_password else None,
        host=secret.host,
        port=secret.port,
        database=secret.dbname,
    )


class SecretCache:
    """The secret, fetched on first use and kept until `invalidate`."""

    def __init__(
        self,
        arn: str,
        fetch: SecretFetcher | None = None,
        *,
        require_password: bool = True,
        require_host: bool = True,
    ) -> None:
        self.arn = arn
        if fetch is None:  # cdc.aws.credentials.SecretsManager, wired by cdc/app/engines.py
            raise ConfigError(f"no secret fetcher to read {SECRET_ARN}={arn}")
        self._fetch = fetch
        self._require_password = require_password
        self._require_host = require_host
        self._lock = threading.Lock()
        self._value: DatabaseSecret | None = None

    def get(self) -> DatabaseSecret:
        with self._lock:
            if self._value is None:
                text = self._fetch(self.arn)
                self._value = parse_secret(
                    text,
                    where=f"the secret {SECRET_ARN}={self.arn}",
                    require_password=self._require_password,
                    require_host=self._require_host,
                )
                log.info("fetched the database secret %s (user %s)", self.arn, self._value.username)
            return self._value

    def invalidate(self, used: DatabaseSecret | None = None) -> None:
        """Forget the secret, so the next `get` fetches it again. With `used`, only if
        the cache still holds that one (another thread may have refreshed it already)."""
        with self._lock:
            if used is None or self._value is used:
                self._value = None


class TokenCache:
    """RDS IAM tokens per (host, port, user), renewed `renew_after` seconds after they
    were made. Wall-clock time, as the token's signature is."""

    def __init__(
        self,
        region: str,
        generate: TokenGenerator | None = None,
        *,
        clock: Clock = time.time,
        renew_after: float = TOKEN_RENEW_AFTER_S,
    ) -> None:
        self.region = region
        if generate is None:  # cdc.aws.credentials.RdsTokens, wired by cdc/app/engines.py
            raise ConfigError(f"no token generator for {IAM_AUTH}=true")
        self._generate = generate
        self._clock = clock
        self._renew_after = renew_after
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, int, str], tuple[str, float]] = {}

    def get(self, host: str, port: int, user: str) -> str:
        key = (host, port, user)
        now = self._clock()
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and now - cached[1] < self._renew_after:
                return cached[0]
            token = self._generate(host, port, user, self.region)
            self._tokens[key] = (token, now)
            log.debug("made an RDS IAM authentication token for %s@%s:%s", user, host, port)
            return token

    def invalidate(self) -> None:
        with self._lock:
            self._tokens.clear()
