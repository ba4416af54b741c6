"""Every setting of the README's Configuration table, with values it accepts and values
it refuses: shared by the tests of the loader (test_config.py), the CLI as a separate
process (test_config.py) and the Lambda handler (test_handler.py).

Each case's `env` is laid over a working configuration (a PostgreSQL URL, a schema);
an empty value unsets a variable (cdc counts empty as unset)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SECRET = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:cdc-db-AbCdEf"
SQLITE = "sqlite:///replica.db"  # never created: the error comes first
BOOLEANS = "true, false, 1, 0, yes, no"
SSLMODES = "disable, allow, prefer, require, verify-ca, verify-full"
CA_BUNDLE = Path(__file__).resolve().parent / "events" / "README.md"  # any existing file
EXAMPLE_MAPPING = Path(__file__).resolve().parent.parent / "examples" / "mapping.toml"
NOT_UTF8 = Path(__file__).resolve().parent / "mappings" / "not_utf8.toml"


@dataclass(frozen=True)
class Bad:
    """A refused value: the error names `variable` and says what it accepts."""

    env: dict[str, str]
    variable: str
    accepts: str


@dataclass(frozen=True)
class Good:
    """An accepted value and what it becomes in Settings (`attribute` may be dotted).
    `handler` is False where the local test database cannot play along (a secret, IAM
    tokens): those are checked by the loader here and on the wire in
    test_credentials.py."""

    env: dict[str, str]
    attribute: str
    expected: Any
    handler: bool = True


BAD: dict[str, Bad] = {
    "url-not-a-url": Bad({"CDC_DATABASE_URL": "db.internal/cdc"}, "CDC_DATABASE_URL", "sqlite:///"),
    "url-unsupported": Bad(
        {"CDC_DATABASE_URL": "oracle://cdc@db.internal/cdc"},
        "CDC_DATABASE_URL",
        "postgresql, mysql/mariadb and sqlite",
    ),
    "url-and-secret": Bad(
        {"CDC_DATABASE_SECRET_ARN": SECRET}, "CDC_DATABASE_SECRET_ARN", "not both"
    ),
    "secret-not-an-arn": Bad(
        {"CDC_DATABASE_URL": "", "CDC_DATABASE_SECRET_ARN": "cdc/db"},
        "CDC_DATABASE_SECRET_ARN",
        "arn:aws:secretsmanager:",
    ),
    "iam-maybe": Bad({"CDC_DATABASE_IAM_AUTH": "maybe"}, "CDC_DATABASE_IAM_AUTH", BOOLEANS),
    "iam-on": Bad({"CDC_DATABASE_IAM_AUTH": "on"}, "CDC_DATABASE_IAM_AUTH", BOOLEANS),
    "iam-without-region": Bad(
        {"CDC_DATABASE_IAM_AUTH": "true", "AWS_REGION": "", "AWS_DEFAULT_REGION": ""},
        "CDC_DATABASE_IAM_AUTH",
        "AWS_REGION",
    ),
    "sslmode-strict": Bad({"CDC_DATABASE_SSLMODE": "strict"}, "CDC_DATABASE_SSLMODE", SSLMODES),
    "sslmode-with-sqlite": Bad(
        {"CDC_DATABASE_URL": SQLITE, "CDC_SCHEMA": "", "CDC_DATABASE_SSLMODE": "require"},
        "CDC_DATABASE_SSLMODE",
        "does not apply to sqlite",
    ),
    "sslrootcert-missing-file": Bad(
        {"CDC_DATABASE_SSLROOTCERT": "/nonexistent/ca.pem"},
        "CDC_DATABASE_SSLROOTCERT",
        "CA bundle",
    ),
    "verify-full-without-sslrootcert": Bad(
        {"CDC_DATABASE_SSLMODE": "verify-full"}, "CDC_DATABASE_SSLROOTCERT", "CA bundle"
    ),
    "disable-prepared-2": Bad(
        {"CDC_DATABASE_DISABLE_PREPARED": "2"}, "CDC_DATABASE_DISABLE_PREPARED", BOOLEANS
    ),
    "disable-prepared-off": Bad(
        {"CDC_DATABASE_DISABLE_PREPARED": "off"}, "CDC_DATABASE_DISABLE_PREPARED", BOOLEANS
    ),
    "host-without-secret": Bad(
        {"CDC_DATABASE_HOST": "proxy.internal"}, "CDC_DATABASE_HOST", "CDC_DATABASE_SECRET_ARN"
    ),
    "port-zero": Bad(
        {"CDC_DATABASE_URL": "", "CDC_DATABASE_SECRET_ARN": SECRET, "CDC_DATABASE_PORT": "0"},
        "CDC_DATABASE_PORT",
        "1-65535",
    ),
    "port-not-a-number": Bad(
        {"CDC_DATABASE_URL": "", "CDC_DATABASE_SECRET_ARN": SECRET, "CDC_DATABASE_PORT": "x5432"},
        "CDC_DATABASE_PORT",
        "1-65535",
    ),
    "name-without-secret": Bad(
        {"CDC_DATABASE_NAME": "replica"}, "CDC_DATABASE_NAME", "CDC_DATABASE_SECRET_ARN"
    ),
    "schema-with-sqlite": Bad(
        {"CDC_DATABASE_URL": SQLITE, "CDC_SCHEMA": "replica"}, "CDC_SCHEMA", "SQLite"
    ),
    "config-missing": Bad({"CDC_CONFIG": "/nonexistent/cdc.toml"}, "CDC_CONFIG", "does not exist"),
    "config-a-directory": Bad({"CDC_CONFIG": "/"}, "CDC_CONFIG", "cannot be read"),
    "config-not-utf8": Bad({"CDC_CONFIG": str(NOT_UTF8)}, "CDC_CONFIG", "not UTF-8"),
    "log-level-loud": Bad(
        {"CDC_LOG_LEVEL": "LOUD"}, "CDC_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR, CRITICAL"
    ),
    "metrics-of": Bad({"CDC_METRICS": "of"}, "CDC_METRICS", "emf, off"),
    "metrics-on": Bad({"CDC_METRICS": "on"}, "CDC_METRICS", "emf, off"),
    "metrics-false": Bad({"CDC_METRICS": "false"}, "CDC_METRICS", "emf, off"),
    "namespace-reserved": Bad(
        {"CDC_METRICS_NAMESPACE": "AWS/Lambda"}, "CDC_METRICS_NAMESPACE", "not starting with AWS/"
    ),
    "namespace-bad-character": Bad(
        {"CDC_METRICS_NAMESPACE": "Shop|Replication"}, "CDC_METRICS_NAMESPACE", "A-Z a-z 0-9"
    ),
    "namespace-too-long": Bad(
        {"CDC_METRICS_NAMESPACE": "n" * 256}, "CDC_METRICS_NAMESPACE", "1 to 255"
    ),
}

GOOD: dict[str, Good] = {
    "iam-No": Good({"CDC_DATABASE_IAM_AUTH": "No"}, "database.iam_auth", False),
    "iam-0": Good({"CDC_DATABASE_IAM_AUTH": "0"}, "database.iam_auth", False),
    "iam-TRUE": Good(
        {"CDC_DATABASE_IAM_AUTH": "TRUE", "AWS_REGION": "eu-west-1"},
        "database.iam_auth",
        True,
        handler=False,
    ),
    "sslmode-Disable": Good({"CDC_DATABASE_SSLMODE": "Disable"}, "database.sslmode", "disable"),
    "sslmode-prefer": Good({"CDC_DATABASE_SSLMODE": "prefer"}, "database.sslmode", "prefer"),
    "sslrootcert-file": Good(
        {"CDC_DATABASE_SSLMODE": "prefer", "CDC_DATABASE_SSLROOTCERT": str(CA_BUNDLE)},
        "database.sslrootcert",
        str(CA_BUNDLE),
    ),
    "disable-prepared-yes": Good(
        {"CDC_DATABASE_DISABLE_PREPARED": "yes"}, "database.disable_prepared", True
    ),
    "disable-prepared-1": Good(
        {"CDC_DATABASE_DISABLE_PREPARED": "1"}, "database.disable_prepared", True
    ),
    "disable-prepared-False": Good(
        {"CDC_DATABASE_DISABLE_PREPARED": "False"}, "database.disable_prepared", False
    ),
    "host-port-name-with-secret": Good(
        {
            "CDC_DATABASE_URL": "",
            "CDC_DATABASE_SECRET_ARN": SECRET,
            "CDC_DATABASE_HOST": "proxy.internal",
            "CDC_DATABASE_PORT": "6432",
            "CDC_DATABASE_NAME": "replica",
        },
        "database.port",
        6432,
        handler=False,
    ),
    "schema": Good({"CDC_SCHEMA": "replica_x"}, "schema", "replica_x", handler=False),
    "config": Good({"CDC_CONFIG": str(EXAMPLE_MAPPING)}, "config_path", EXAMPLE_MAPPING),
    "log-level-debug": Good({"CDC_LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
    "log-level-Warning": Good({"CDC_LOG_LEVEL": "Warning"}, "log_level", "WARNING"),
    "metrics-OFF": Good({"CDC_METRICS": "OFF"}, "metrics", "off"),
    "metrics-Emf": Good({"CDC_METRICS": "Emf"}, "metrics", "emf"),
    "metrics-unset": Good({"CDC_METRICS": ""}, "metrics", "emf"),
    "namespace": Good(
        {"CDC_METRICS_NAMESPACE": "Shop/Replication #1:a.b-c_d"},
        "metrics_namespace",
        "Shop/Replication #1:a.b-c_d",
    ),
    "namespace-unset": Good({"CDC_METRICS_NAMESPACE": ""}, "metrics_namespace", "cdc"),
    "service": Good({"POWERTOOLS_SERVICE_NAME": "orders-replica"}, "service", "orders-replica"),
    "service-unset": Good({"POWERTOOLS_SERVICE_NAME": ""}, "service", "cdc"),
}


def bad_cases() -> list[Any]:
    return [pytest.param(case, id=name) for name, case in BAD.items()]


def good_cases(*, handler: bool = False) -> list[Any]:
    return [
        pytest.param(case, id=name) for name, case in GOOD.items() if case.handler or not handler
    ]


def attribute(settings: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        settings = getattr(settings, name)
    return settings
