"""The AWS edge: boto3 clients made on demand, error codes, and wire shapes.

boto3 is imported inside functions only. The Lambda handler never needs it unless an
AWS feature is configured, and importing boto3 costs a cold start ~0.3 s, so nothing the
handler imports may import it at module level.

The low-level clients hand back AttributeValues almost as the wire carries them, with
one difference that matters here: botocore decodes binary (`B`, `BS`) into `bytes`,
while a Lambda event carries base64 text. `to_wire` / `from_wire` convert between the
two so every record we build looks exactly like one Lambda would deliver.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from cdc.aws.errors import AwsSetupError, error_code, is_transient
from cdc.core.errors import CdcError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("cdc.aws")

_ARN = re.compile(r"arn:(aws[a-z-]*):([a-z0-9-]+):([a-z0-9-]*):([0-9]*):(.+)")


@dataclass(frozen=True, slots=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Arn | None:
        match = _ARN.fullmatch(text)
        return None if match is None else cls(*match.groups())


def region_of(arn: str) -> str | None:
    parsed = Arn.parse(arn)
    return (parsed.region or None) if parsed else None


def call(
    operation: Callable[..., Any],
    *,
    attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
    quiet: bool = False,
    **kwargs: Any,
) -> Any:
    """Call an AWS operation, retrying throttling, server errors and network failures
    with exponential backoff and full jitter (on top of botocore's own few retries): a
    long scan or a tail must ride out a busy table or a network blip, not die on it.
    Setup mistakes and permanent errors are raised at once. `quiet` logs the retries
    at INFO (shown with -v): a command's first call, whose failure is reported anyway."""
    name = getattr(operation, "__name__", "call")
    level = logging.INFO if quiet else logging.WARNING
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.2, max=10),
        stop=stop_after_attempt(attempts),
        sleep=sleep,
        before_sleep=lambda state: log.log(
            level,
            "%s throttled or unavailable (attempt %d), retrying: %s",
            name,
            state.attempt_number,
            state.outcome.exception() if state.outcome else "?",
        ),
        reraise=True,
    )
    return retrying(operation, **kwargs)


class Clients:
    """Makes boto3 clients on demand, one per service and region, and reuses them.

    boto3 clients are thread-safe (sessions are not, so the session is made once, under
    a lock). Region: the argument (e.g. from an ARN), else `region` given here, else
    what boto3 resolves (AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config). Endpoints for
    local emulators come from boto3's own AWS_ENDPOINT_URL_<SERVICE> variables.
    Tests pass a subclass that returns fakes.
    """

    def __init__(self, region: str | None = None) -> None:
        self.region = region or os.environ.get("AWS_REGION") or None
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[tuple[str, str | None], Any] = {}

    def _client(self, service: str, region: str | None) -> Any:
        key = (service, region or self.region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                import boto3
                from botocore.config import Config

                if self._session is None:
                    self._session = boto3.session.Session()
                config = Config(
                    retries={"mode": "standard", "max_attempts": 8},
                    connect_timeout=5,
                    read_timeout=30,
                    # Scans run one client from several threads.
                    max_pool_connections=50,
                )
                client = self._session.client(service, region_name=key[1], config=config)
                self._clients[key] = client
            return client

    def dynamodb(self, region: str | None = None) -> DynamoDBClient:
        client: DynamoDBClient = self._client("dynamodb", region)
        return client

    def streams(self, region: str | None = None) -> DynamoDBStreamsClient:
        client: DynamoDBStreamsClient = self._client("dynamodbstreams", region)
        return client

    def sqs(self, region: str | None = None) -> SQSClient:
        client: SQSClient = self._client("sqs", region)
        return client

    def s3(self, region: str | None = None) -> S3Client:
        client: S3Client = self._client("s3", region)
        return client


# --- source tables ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceTable:
    """What backfill and verify need to know of a DynamoDB table (DescribeTable)."""

    name: str
    arn: str
    keys: tuple[tuple[str, str], ...]  # (attribute, S | N | B): partition key first
    item_count: int | None  # DynamoDB's estimate, refreshed about every six hours
    stream_arn: str | None

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.keys)

    @property
    def region(self) -> str:
        parsed = Arn.parse(self.arn)
        return parsed.region if parsed else ""

    def synthetic_stream_arn(self, label: str) -> str:
        """A stream ARN for records we make up (a backfill's, verify's): the table's
        real partition, region and account, and a label no real stream has (real labels
        are timestamps), so their checkpoints and dead letters are told apart."""
        parsed = Arn.parse(self.arn)
        if parsed is None:
            raise CdcError(f"DynamoDB returned table ARN {self.arn!r}, which cdc cannot parse")
        return (
            f"arn:{parsed.partition}:dynamodb:{parsed.region}:{parsed.account}:"
            f"table/{self.name}/stream/{label}"
        )


def table_name_and_region(table: str) -> tuple[str, str | None]:
    """`Orders` or `arn:aws:dynamodb:eu-west-1:123456789012:table/Orders`."""
    parsed = Arn.parse(table)
    if parsed is None:
        return table, None
    if parsed.service != "dynamodb" or not parsed.resource.startswith("table/"):
        raise CdcError(f"{table!r} is not a DynamoDB table name or table ARN")
    return parsed.resource.split("/")[1], parsed.region or None


STARTUP_ATTEMPTS = 3  # the first call of a command: then a network error is a setup mistake


def describe_table(
    client: DynamoDBClient, name: str, attempts: int = STARTUP_ATTEMPTS
) -> SourceTable:
    """The table, as the first contact of a command with AWS: a network error is retried
    `attempts` times, then reported (`explain` says which endpoint could not be reached)."""
    try:
        table = call(client.describe_table, attempts=attempts, quiet=True, TableName=name)["Table"]
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            region = getattr(getattr(client, "meta", None), "region_name", None) or "?"
            raise AwsSetupError(
                f"DynamoDB table {name!r} does not exist in region {region}: check the "
                "table name and the region (--region, AWS_REGION, or give the table ARN)"
            ) from None
        raise
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    schema = sorted(table["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
    count = table.get("ItemCount")
    return SourceTable(
        name=table["TableName"],
        arn=table["TableArn"],
        keys=tuple((k["AttributeName"], types[k["AttributeName"]]) for k in schema),
        item_count=int(count) if count is not None else None,
        stream_arn=table.get("LatestStreamArn"),
    )
