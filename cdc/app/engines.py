"""The engine the settings describe, with the AWS credential sources wired in (the
entry points call this; the sql package itself knows no AWS)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from cdc.config.names import HASH_KEY_SECRET_ARN
from cdc.sql.engines import make_engine

if TYPE_CHECKING:
    from cdc.config import Settings


def engine_for(settings: Settings, **overrides: Any) -> Engine:
    """The engine for the configured database: the settings' URL (CDC_DATABASE_URL),
    or their Secrets Manager secret (CDC_DATABASE_SECRET_ARN), with the connection
    options they ask for (IAM authentication, TLS, no prepared statements: see
    cdc/sql/credentials.py). boto3 is imported only when a secret or IAM auth is used."""
    from cdc.aws.credentials import RdsTokens, SecretsManager
    from cdc.sql.credentials import DatabaseAccess

    load_hash_key(settings)

    access = DatabaseAccess.from_settings(
        settings, fetch_secret=SecretsManager(), generate_token=RdsTokens()
    )
    engine = make_engine(access.url, connect_args=access.connect_args, **overrides)
    access.attach(engine)
    return engine


def load_hash_key(settings: Settings) -> None:
    """Read the key of hashed attributes from its secret (CDC_HASH_KEY_SECRET_ARN), once,
    at start-up: a missing secret is a configuration error, not a failure per record."""
    key = settings.hash_key
    if key is None or key.secret_arn is None or not settings.hashes:
        return
    from cdc.aws.credentials import SecretsManager

    arn, fetch = key.secret_arn, SecretsManager()
    key.use(lambda: fetch(arn, setting=HASH_KEY_SECRET_ARN))
    key.get()
