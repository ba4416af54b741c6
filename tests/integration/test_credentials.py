"""Database credentials on AWS: a Secrets Manager secret (fetched once, fetched again
after a rotation), RDS IAM tokens (renewed before they expire), TLS and prepared
statements. Secrets Manager is moto; the database is a real PostgreSQL that checks
passwords (scram-sha-256) and speaks TLS with a certificate made for the test."""

from __future__ import annotations

import json
import logging
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, NullPool, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from cdc.aws.credentials import RdsTokens, SecretsManager
from cdc.config import DatabaseOptions, Settings, load_settings
from cdc.core.errors import ConfigError
from cdc.jobs.replicate import Replicator
from cdc.sql.credentials import Credentials, DatabaseAccess, engine_options, is_auth_failure
from cdc.sql.engines import make_engine
from cdc.sql.secrets import TokenCache, parse_secret, url_from_secret
from tests.factories import event, insert
from tests.pgcluster import TempCluster, _find

SUPERUSER_PASSWORD = "super-Secret-1"
APP_PASSWORD_1 = "first-Pa55word"
APP_PASSWORD_2 = "second-Pa55word"
REGION = "us-east-1"


# --- a PostgreSQL that checks passwords and speaks TLS ---------------------------------


class PasswordCluster(TempCluster):
    """scram-sha-256 for every connection (initdb -A), TLS with a throwaway CA whose
    server certificate names 127.0.0.1 only."""

    def init(self) -> PasswordCluster:
        pwfile = self.root / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        self._make_certificates()
        self._own(pwfile, self.root / "server.key", self.root / "server.crt")
        self._run(
            _find("initdb"), "-D", str(self.data), "-U", "postgres",
            "-A", "scram-sha-256", f"--pwfile={pwfile}", "--no-sync",
        )  # fmt: skip
        return self

    def _make_certificates(self) -> None:
        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=self.root, check=True, capture_output=True)

        (self.root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=cdc-test-ca")  # fmt: skip
        openssl("req", *key, "-keyout", "server.key", "-out", "server.csr",
                "-subj", "/CN=127.0.0.1")  # fmt: skip
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "server.crt", "-days", "2",
                "-extfile", "san.ext")  # fmt: skip
        (self.root / "server.key").chmod(0o600)

    def _own(self, *paths: Path) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
            f"-c ssl=on -c ssl_cert_file={self.root / 'server.crt'} "
            f"-c ssl_key_file={self.root / 'server.key'}"
        )
        self._run(
            _find("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )

    def login_url(self, user: str = "postgres", password: str = SUPERUSER_PASSWORD) -> URL:
        return URL.create(
            "postgresql+psycopg", username=user, password=password, host="127.0.0.1",
            port=self.port, database="postgres",
        )  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[PasswordCluster]:
    pg = PasswordCluster().init()
    pg.start()
    admin = make_engine(pg.login_url())
    with admin.begin() as conn:
        conn.execute(text(f"create role cdc_app login password '{APP_PASSWORD_1}'"))
        conn.execute(text("create schema app authorization cdc_app"))
        conn.execute(text("grant create on database postgres to cdc_app"))
    admin.dispose()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def app_password(cluster: PasswordCluster) -> Iterator[None]:
    """cdc_app's password is APP_PASSWORD_1 at the start of every test."""
    yield
    set_password(cluster, APP_PASSWORD_1)


def set_password(cluster: PasswordCluster, password: str) -> None:
    admin = make_engine(cluster.login_url(), poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f"alter role cdc_app password '{password}'"))
    admin.dispose()


def rds_secret(cluster: PasswordCluster, password: str, **changes: Any) -> str:
    secret = {
        "username": "cdc_app",
        "password": password,
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": cluster.port,
        "dbname": "postgres",
        "dbInstanceIdentifier": "cdc-test",
    }
    secret.update(changes)
    return json.dumps({k: v for k, v in secret.items() if v is not None})


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto in us-east-1 with fake credentials; yields a Secrets Manager client."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


class CountingFetcher:
    """The real fetcher (boto3 → moto), counting its calls."""

    def __init__(self) -> None:
        self.real = SecretsManager()
        self.calls = 0

    def __call__(self, arn: str) -> str:
        self.calls += 1
        return self.real(arn)


def access_for(url: URL | None, env: dict[str, str], **kwargs: Any) -> DatabaseAccess:
    """What the service builds from its environment (read by cdc.config) and `url`, with
    the service's AWS credential sources (cdc/app/engines.py) unless `kwargs` name others."""
    if url is not None:
        env = {**env, "CDC_DATABASE_URL": url.render_as_string(hide_password=False)}
    kwargs.setdefault("fetch_secret", SecretsManager())
    kwargs.setdefault("generate_token", RdsTokens())
    return DatabaseAccess.from_settings(load_settings(env), **kwargs)


def options(env: dict[str, str]) -> DatabaseOptions:
    return load_settings(env).database


def engine_for(access: DatabaseAccess, **kwargs: Any) -> Engine:
    """What cdc.app.engines builds for the handler: the access's URL and connect args, the hook."""
    engine = make_engine(
        access.url, connect_args={"connect_timeout": 5, **access.connect_args}, **kwargs
    )
    access.attach(engine)
    return engine


def current_user(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("select current_user")).scalar_one())


# --- the secret's format ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "driver", "port"),
    [
        ("postgres", "postgresql+psycopg", 5432),
        ("aurora-postgresql", "postgresql+psycopg", 5432),
        ("mysql", "mysql+pymysql", 3306),
        # Like CDC_DATABASE_URL's mariadb://: the exact-key collation is MariaDB's
        # before the first connection (offline `cdc migrate --sql`).
        ("mariadb", "mariadb+pymysql", 3306),
        ("aurora-mysql", "mysql+pymysql", 3306),
        (None, "postgresql+psycopg", 5432),
    ],
)
def test_url_from_secret_picks_the_driver_from_the_engine(engine, driver, port):
    secret = {
        "username": "app",
        "password": "p@ss:/word",
        "host": "db.example",
        "port": port,
        "dbname": "shop",
    }
    if engine is not None:
        secret["engine"] = engine
    url = url_from_secret(json.dumps(secret))
    assert url.drivername == driver
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app", "p@ss:/word", "db.example", port, "shop",
    )  # fmt: skip
    assert "p@ss" not in f"{url} {url!r}"


def test_url_from_secret_with_a_driver_and_without_the_password():
    url = url_from_secret(
        {"username": "app", "password": "pw", "host": "h", "port": "5433", "engine": "postgres"},
        "postgresql+psycopg2",
        include_password=False,
    )
    assert (url.drivername, url.password, url.port) == ("postgresql+psycopg2", None, 5433)


@pytest.mark.parametrize("missing", ["username", "password", "host"])
def test_a_secret_without_a_required_key_is_an_error_naming_the_key(missing):
    secret = {"username": "app", "password": "hunter2-pw", "host": "h", "engine": "postgres"}
    del secret[missing]
    with pytest.raises(ConfigError, match=f"has no '{missing}'") as info:
        parse_secret(json.dumps(secret))
    assert "hunter2-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("not json, password=hunter2-pw", "is not JSON"),
        ('["hunter2-pw"]', "is not a JSON object"),
        (
            '{"username": "a", "password": "hunter2-pw", "host": "h", "port": "x"}',
            "'port' must be a port",
        ),
        (
            '{"username": "a", "password": "hunter2-pw", "host": "h", "engine": "oracle"}',
            "engine 'oracle'",
        ),
        ('{"username": 7, "password": "hunter2-pw", "host": "h"}', "'username' must be a string"),
    ],
)
def test_secret_format_errors_never_echo_the_secret(secret, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_secret(secret)
    assert "hunter2" not in str(info.value)


def test_a_secret_repr_hides_the_password():
    secret = parse_secret({"username": "a", "password": "hunter2-pw", "host": "h"})
    assert "hunter2" not in f"{secret} {secret!r}"


# --- options from the environment -------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CDC_DATABASE_IAM_AUTH": "maybe"}, "CDC_DATABASE_IAM_AUTH"),
        ({"CDC_DATABASE_DISABLE_PREPARED": "2"}, "CDC_DATABASE_DISABLE_PREPARED"),
        ({"CDC_DATABASE_SSLMODE": "strict"}, "CDC_DATABASE_SSLMODE"),
        ({"CDC_DATABASE_SSLROOTCERT": "/nonexistent/ca.pem"}, "CDC_DATABASE_SSLROOTCERT"),
        ({"CDC_DATABASE_SSLMODE": "verify-full"}, "CDC_DATABASE_SSLROOTCERT"),
        ({"CDC_DATABASE_IAM_AUTH": "true", "CDC_DATABASE_SSLMODE": "disable"},
         "CDC_DATABASE_SSLMODE"),
        ({"CDC_DATABASE_SECRET_ARN": "my-secret"}, "CDC_DATABASE_SECRET_ARN"),
        ({"CDC_DATABASE_HOST": "proxy.example"}, "CDC_DATABASE_HOST"),
        ({"CDC_DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x",
          "CDC_DATABASE_PORT": "0"}, "CDC_DATABASE_PORT"),
    ],
)  # fmt: skip
def test_configuration_errors_name_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings(env)


def test_configuration_errors_at_engine_time_name_the_variable(tmp_path):
    url = URL.create("postgresql+psycopg", username="u", host="h")
    with pytest.raises(ConfigError, match="AWS_REGION"):
        access_for(url, {"CDC_DATABASE_IAM_AUTH": "true"})
    with pytest.raises(ConfigError, match="CDC_DATABASE_URL or CDC_DATABASE_SECRET_ARN"):
        access_for(None, {})
    sqlite = URL.create("sqlite", database=str(tmp_path / "x.db"))
    with pytest.raises(ConfigError, match="CDC_DATABASE_SSLMODE does not apply to sqlite"):
        access_for(sqlite, {"CDC_DATABASE_SSLMODE": "require"})


def test_engine_options_for_postgres(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "CDC_DATABASE_SSLMODE": "verify-full",
        "CDC_DATABASE_SSLROOTCERT": str(ca),
        "CDC_DATABASE_DISABLE_PREPARED": "true",
    }
    assert engine_options(options(env), "postgresql") == {
        "sslmode": "verify-full",
        "sslrootcert": str(ca),
        "prepare_threshold": None,
    }
    assert engine_options(options({}), "postgresql") == {}
    # IAM authentication needs TLS: require unless told otherwise.
    iam = options({"CDC_DATABASE_IAM_AUTH": "yes", "AWS_REGION": REGION})
    assert engine_options(iam, "postgresql") == {"sslmode": "require"}


def test_engine_options_for_mysql(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert engine_options(options({"CDC_DATABASE_SSLMODE": "disable"}), "mysql") == {
        "ssl_disabled": True
    }
    assert engine_options(options({"CDC_DATABASE_SSLMODE": "require"}), "mysql") == {
        "ssl": {"check_hostname": False, "verify_mode": "none"}
    }
    env = {"CDC_DATABASE_SSLMODE": "verify-full", "CDC_DATABASE_SSLROOTCERT": str(ca)}
    assert engine_options(options(env), "mariadb") == {
        "ssl": {"ca": str(ca), "check_hostname": True}
    }
    assert engine_options(options({"CDC_DATABASE_DISABLE_PREPARED": "true"}), "mysql") == {}


# --- Secrets Manager and rotation --------------------------------------------------------


def test_the_secret_is_fetched_once_for_many_connections(aws, cluster, app_password):
    arn = aws.create_secret(Name="cdc/db", SecretString=rds_secret(cluster, APP_PASSWORD_1))["ARN"]
    fetcher = CountingFetcher()
    access = access_for(None, {"CDC_DATABASE_SECRET_ARN": arn}, fetch_secret=fetcher)
    assert access.url.password is None  # the password lives in the cache only
    engine = engine_for(access, poolclass=NullPool)  # every checkout is a new connection
    for _ in range(5):
        assert current_user(engine) == "cdc_app"
    assert fetcher.calls == 1
    engine.dispose()


def test_a_rotation_costs_one_failed_login_then_the_secret_is_fetched_again(
    aws, cluster, app_password, caplog
):
    caplog.set_level(logging.DEBUG, logger="cdc")
    arn = aws.create_secret(Name="cdc/rotating", SecretString=rds_secret(cluster, APP_PASSWORD_1))[
        "ARN"
    ]
    fetcher = CountingFetcher()
    access = access_for(None, {"CDC_DATABASE_SECRET_ARN": arn}, fetch_secret=fetcher)
    engine = engine_for(access, poolclass=NullPool)
    assert current_user(engine) == "cdc_app"

    # GIVEN Secrets Manager rotates the password (database first, then the secret)
    set_password(cluster, APP_PASSWORD_2)
    aws.put_secret_value(SecretId=arn, SecretString=rds_secret(cluster, APP_PASSWORD_2))

    # WHEN a new connection is made with the cached password THEN it fails, once
    with pytest.raises(OperationalError, match="password authentication failed") as info:
        current_user(engine)
    assert is_auth_failure(info.value)
    assert fetcher.calls == 1
    # AND the next attempt fetches the secret again and gets in
    assert current_user(engine) == "cdc_app"
    assert current_user(engine) == "cdc_app"
    assert fetcher.calls == 2

    for password in (APP_PASSWORD_1, APP_PASSWORD_2):
        assert password not in caplog.text
        assert password not in str(info.value)
    assert "fetching the secret" in caplog.text
    engine.dispose()


def test_a_batch_that_meets_a_rotation_is_applied_after_a_retry(aws, cluster, app_password):
    arn = aws.create_secret(Name="cdc/batch", SecretString=rds_secret(cluster, APP_PASSWORD_1))[
        "ARN"
    ]
    fetcher = CountingFetcher()
    access = access_for(None, {"CDC_DATABASE_SECRET_ARN": arn}, fetch_secret=fetcher)
    engine = engine_for(access, poolclass=NullPool)
    replicator = Replicator(engine, Settings(database_url=access.url, schema="app"))
    assert replicator.process(event(insert({"Id": 1}, 10, {"v": "a"}))["Records"]).failed == 0

    set_password(cluster, APP_PASSWORD_2)
    aws.put_secret_value(SecretId=arn, SecretString=rds_secret(cluster, APP_PASSWORD_2))
    result = replicator.process(event(insert({"Id": 2}, 11, {"v": "b"}))["Records"])

    assert (result.failed, result.applied) == (0, 1)
    assert fetcher.calls == 2
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from app.orders")).scalar_one() == 2
    engine.dispose()


def test_rds_managed_secrets_take_host_port_and_name_from_the_environment(
    aws, cluster, app_password
):
    # RDS-managed master secrets hold only username and password.
    secret = json.dumps({"username": "cdc_app", "password": APP_PASSWORD_1})
    arn = aws.create_secret(Name="rds!db-1234", SecretString=secret)["ARN"]
    with pytest.raises(ConfigError, match=r"has no 'host'.*CDC_DATABASE_HOST"):
        access_for(None, {"CDC_DATABASE_SECRET_ARN": arn})
    env = {
        "CDC_DATABASE_SECRET_ARN": arn,
        "CDC_DATABASE_HOST": "127.0.0.1",
        "CDC_DATABASE_PORT": str(cluster.port),
        "CDC_DATABASE_NAME": "postgres",
    }
    access = access_for(None, env)
    assert (access.url.host, access.url.port, access.url.database) == (
        "127.0.0.1",
        cluster.port,
        "postgres",
    )
    engine = engine_for(access)
    assert current_user(engine) == "cdc_app"
    engine.dispose()


def test_the_environment_overrides_the_secrets_host(aws, cluster, app_password):
    # e.g. the secret names the instance, the function connects through RDS Proxy
    secret = rds_secret(cluster, APP_PASSWORD_1, host="instance.invalid", port=1)
    arn = aws.create_secret(Name="cdc/proxy", SecretString=secret)["ARN"]
    env = {
        "CDC_DATABASE_SECRET_ARN": arn,
        "CDC_DATABASE_HOST": "127.0.0.1",
        "CDC_DATABASE_PORT": str(cluster.port),
    }
    engine = engine_for(access_for(None, env), poolclass=NullPool)
    assert current_user(engine) == "cdc_app"
    engine.dispose()


def test_secrets_manager_errors_name_the_variable(aws):
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:missing-AbCdEf"
    with pytest.raises(ConfigError, match=r"CDC_DATABASE_SECRET_ARN.*ResourceNotFoundException"):
        access_for(None, {"CDC_DATABASE_SECRET_ARN": arn})
    bad = aws.create_secret(Name="cdc/bad", SecretString='{"username": "u", "host": "h"}')["ARN"]
    with pytest.raises(ConfigError, match=r"CDC_DATABASE_SECRET_ARN=arn:.* has no 'password'"):
        access_for(None, {"CDC_DATABASE_SECRET_ARN": bad})


def test_a_binary_secret_is_read_too(aws):
    arn = aws.create_secret(
        Name="cdc/binary",
        SecretBinary=b'{"username": "u", "password": "p", "host": "h", "port": 6432}',
    )["ARN"]
    assert SecretsManager()(arn).startswith('{"username"')


# --- RDS IAM authentication ---------------------------------------------------------------


def test_iam_tokens_come_from_boto3(aws):
    tokens = TokenCache(
        REGION, RdsTokens()
    )  # the service's generator: boto3's rds client (moto credentials)
    token = tokens.get("db.cluster-x.us-east-1.rds.amazonaws.com", 5432, "cdc_app")
    assert token.startswith("db.cluster-x.us-east-1.rds.amazonaws.com:5432/?")
    for part in ("Action=connect", "DBUser=cdc_app", "X-Amz-Expires=900", "X-Amz-Signature="):
        assert part in token


class FakeTokens:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str, str]] = []

    def __call__(self, host: str, port: int, user: str, region: str) -> str:
        self.calls.append((host, port, user, region))
        return f"token-{len(self.calls)}"


def test_an_iam_token_is_reused_for_ten_minutes_then_renewed():
    now = [1_000_000.0]
    generate = FakeTokens()
    tokens = TokenCache(REGION, generate, clock=lambda: now[0])
    assert tokens.get("h", 5432, "u") == "token-1"
    now[0] += 599
    assert tokens.get("h", 5432, "u") == "token-1"
    now[0] += 2  # 10 minutes and a second: 4 minutes before the token would expire
    assert tokens.get("h", 5432, "u") == "token-2"
    assert generate.calls == [("h", 5432, "u", REGION)] * 2
    assert tokens.get("other", 5432, "u") == "token-3"  # one token per host, port and user


def test_the_iam_token_is_the_password_of_each_connection():
    now = [0.0]
    generate = FakeTokens()
    url = URL.create(
        "postgresql+psycopg", username="cdc_app", host="db.example", port=6432, database="d"
    )
    env = {"CDC_DATABASE_IAM_AUTH": "true", "AWS_REGION": "eu-west-1"}
    access = access_for(url, env, generate_token=generate, clock=lambda: now[0])
    assert access.connect_args == {"sslmode": "require"}
    assert access.credentials is not None
    cparams: dict[str, Any] = {"host": "db.example", "port": 6432, "user": "cdc_app", "dbname": "d"}
    access.credentials.apply(cparams)
    assert cparams["password"] == "token-1"
    assert generate.calls == [("db.example", 6432, "cdc_app", "eu-west-1")]
    now[0] += 700
    access.credentials.apply(cparams)
    assert cparams["password"] == "token-2"


class RejectingDialect:
    """A dialect whose driver refuses the first login, as RDS refuses a stale token."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.passwords: list[str] = []

    def connect(self, *cargs: Any, **cparams: Any) -> object:
        self.passwords.append(cparams["password"])
        if len(self.passwords) == 1:
            raise RuntimeError(self.message)
        return object()


def test_a_rejected_iam_token_is_replaced_on_the_next_attempt():
    generate = FakeTokens()
    hook = Credentials("postgresql", tokens=TokenCache(REGION, generate, clock=lambda: 0.0))
    dialect = RejectingDialect('FATAL:  PAM authentication failed for user "cdc_app"')
    params = {"host": "h", "port": 5432, "user": "cdc_app"}
    with pytest.raises(RuntimeError):
        hook.do_connect(dialect, None, [], dict(params))
    hook.do_connect(dialect, None, [], dict(params))
    assert dialect.passwords == ["token-1", "token-2"]


def test_other_connect_errors_keep_the_credentials():
    generate = FakeTokens()
    hook = Credentials("postgresql", tokens=TokenCache(REGION, generate, clock=lambda: 0.0))
    dialect = RejectingDialect("connection refused")
    params = {"host": "h", "port": 5432, "user": "cdc_app"}
    with pytest.raises(RuntimeError):
        hook.do_connect(dialect, None, [], dict(params))
    hook.do_connect(dialect, None, [], dict(params))
    assert dialect.passwords == ["token-1", "token-1"]


# --- TLS and prepared statements, on the wire ----------------------------------------------


def ssl_in_use(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            ).scalar_one()
        )


def test_tls_settings_reach_the_driver(cluster):
    url = cluster.login_url()
    ca = str(cluster.ca)
    verified = access_for(
        url, {"CDC_DATABASE_SSLMODE": "verify-full", "CDC_DATABASE_SSLROOTCERT": ca}
    )
    engine = engine_for(verified)
    assert ssl_in_use(engine)
    engine.dispose()

    # The certificate names 127.0.0.1 only: verify-full refuses "localhost", verify-ca
    # (which checks the chain, not the name) accepts it.
    by_name = url.set(host="localhost")
    engine = engine_for(
        access_for(by_name, {"CDC_DATABASE_SSLMODE": "verify-full", "CDC_DATABASE_SSLROOTCERT": ca})
    )
    with pytest.raises(OperationalError, match="does not match host name"):
        ssl_in_use(engine)
    engine.dispose()
    engine = engine_for(
        access_for(by_name, {"CDC_DATABASE_SSLMODE": "verify-ca", "CDC_DATABASE_SSLROOTCERT": ca})
    )
    assert ssl_in_use(engine)
    engine.dispose()

    engine = engine_for(access_for(url, {"CDC_DATABASE_SSLMODE": "disable"}))
    assert not ssl_in_use(engine)
    engine.dispose()


def prepared_statements_after_repeats(engine: Engine) -> int:
    with engine.connect() as conn:
        for i in range(10):
            conn.execute(text("select cast(:x as int) + 1"), {"x": i})
        return int(conn.execute(text("select count(*) from pg_prepared_statements")).scalar_one())


def test_prepared_statements_can_be_turned_off_for_poolers(cluster):
    url = cluster.login_url()
    default = engine_for(access_for(url, {}))
    assert prepared_statements_after_repeats(default) > 0  # psycopg prepares after 5 runs
    default.dispose()
    pooled = engine_for(access_for(url, {"CDC_DATABASE_DISABLE_PREPARED": "true"}))
    assert prepared_statements_after_repeats(pooled) == 0
    pooled.dispose()


# --- cost -------------------------------------------------------------------------------


def test_a_plain_url_needs_neither_boto3_nor_a_hook():
    code = (
        "import sys; "
        "from cdc.config import load_settings; "
        "from cdc.sql.credentials import DatabaseAccess; "
        "s = load_settings({'CDC_DATABASE_URL': 'postgresql+psycopg://u@h/d'}); "
        "a = DatabaseAccess.from_settings(s); "
        "assert a.credentials is None and a.connect_args == {}; "
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2]
    )


def test_iam_authentication_can_take_user_and_host_from_a_secret_without_a_password():
    secret = json.dumps({"username": "cdc_app", "host": "db.example", "port": 5432, "dbname": "d"})
    env = {
        "CDC_DATABASE_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
        "CDC_DATABASE_IAM_AUTH": "true",
        "AWS_REGION": "eu-west-1",
    }
    generate = FakeTokens()
    access = access_for(
        None, env, fetch_secret=lambda arn: secret, generate_token=generate, clock=lambda: 0.0
    )
    assert access.credentials is not None
    cparams: dict[str, Any] = {}
    access.credentials.apply(cparams)
    assert cparams == {
        "user": "cdc_app",
        "host": "db.example",
        "port": 5432,
        "dbname": "d",
        "password": "token-1",
    }


def test_the_handler_replicates_with_a_secret_and_survives_a_rotation(
    aws, cluster, app_password, monkeypatch
):
    from cdc import handler as lambda_handler
    from tests.factories import FakeContext

    arn = aws.create_secret(Name="cdc/handler", SecretString=rds_secret(cluster, APP_PASSWORD_1))[
        "ARN"
    ]
    monkeypatch.delenv("CDC_DATABASE_URL", raising=False)
    monkeypatch.delenv("CDC_CONFIG", raising=False)
    monkeypatch.setenv("CDC_DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("CDC_SCHEMA", "app")
    lambda_handler.reset()
    try:
        first = lambda_handler.handler(event(insert({"Id": 1}, 10, {"v": "a"})), FakeContext())
        assert first == {"batchItemFailures": []}
        set_password(cluster, APP_PASSWORD_2)
        aws.put_secret_value(SecretId=arn, SecretString=rds_secret(cluster, APP_PASSWORD_2))
        # a new connection needs the new password
        lambda_handler.replicator().engine.pool.dispose()
        second = lambda_handler.handler(event(insert({"Id": 2}, 11, {"v": "b"})), FakeContext())
        assert second == {"batchItemFailures": []}
        with lambda_handler.replicator().engine.connect() as conn:
            assert conn.execute(text("select count(*) from app.orders")).scalar_one() == 2
    finally:
        lambda_handler.reset()
