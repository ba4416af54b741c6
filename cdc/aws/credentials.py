"""The AWS side of database credentials: a Secrets Manager fetcher and an RDS IAM token
generator (boto3 is imported only when one is used)."""

from __future__ import annotations

from typing import Any

from cdc.config import (
    SECRET_ARN,
)
from cdc.core.errors import ConfigError


class SecretsManager:
    """The default `SecretFetcher`: boto3, imported on first use, in the ARN's region."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def __call__(self, arn: str, setting: str = SECRET_ARN) -> str:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        parts = arn.split(":")
        region = parts[3] if len(parts) > 3 and parts[3] else None
        client = self._clients.get(region or "")
        if client is None:
            config = Config(
                connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
            )
            client = boto3.client("secretsmanager", region_name=region, config=config)
            self._clients[region or ""] = client
        try:
            response = client.get_secret_value(SecretId=arn)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ConfigError(
                f"cannot read {setting}={arn}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise ConfigError(
                f"cannot reach Secrets Manager for {setting}={arn} ({exc}); in a VPC the "
                "function needs a Secrets Manager VPC endpoint or a NAT gateway"
            ) from None
        if "SecretString" in response:
            return str(response["SecretString"])
        return bytes(response["SecretBinary"]).decode("utf-8")


class RdsTokens:
    """The default `TokenGenerator`: boto3's `generate_db_auth_token` (signs locally
    with the function's role credentials; no network call)."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def __call__(self, host: str, port: int, user: str, region: str) -> str:
        import boto3

        client = self._clients.get(region)
        if client is None:
            client = self._clients[region] = boto3.client("rds", region_name=region)
        token: str = client.generate_db_auth_token(
            DBHostname=host, Port=port, DBUsername=user, Region=region
        )
        return token
