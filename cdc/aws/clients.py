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

import base64
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from cdc.core.errors import CdcError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_sqs import SQSClient

# --- errors: the one place AWS errors are classified ------------------------------------


class AwsErrorKind(Enum):
    """What an error from an AWS call asks of the caller (README, "Commands").

    * THROTTLING: slow down; the same request succeeds later.
    * TRANSIENT: the network or AWS is having a moment (connection refused or reset, a
      timeout, a 5xx); the same request succeeds later.
    * SETUP: a mistake a person must fix (no region, no or bad credentials, a missing
      permission, a table, stream or queue that does not exist); retrying cannot help.
    * PERMANENT: anything else, e.g. a request AWS says is invalid; retrying cannot help.
    """

    THROTTLING = "throttling"
    TRANSIENT = "transient"
    SETUP = "setup"
    PERMANENT = "permanent"


# Errors that say "slow down", not "you are wrong". botocore's standard retry mode
# already retries them a few times; callers that must keep going (tail) retry more.
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "LimitExceededException",
        "TooManyRequestsException",
        "SlowDown",
    }
)
# Server-side hiccups worth retrying like throttling.
TRANSIENT_CODES = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
        "ExpiredToken",
        "AuthFailure",
    }
)
PERMISSION_CODES = frozenset({"AccessDeniedException", "AccessDenied"})
NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    }
)
SETUP_CODES = CREDENTIAL_CODES | PERMISSION_CODES | NOT_FOUND_CODES

# botocore exceptions, matched by class name anywhere in the exception's MRO so
# botocore stays unimported until a client is made (the handler's cold start).
# Every network failure derives from botocore's `ConnectionError` (refused, DNS,
# connect timeout, proxy, TLS) or `HTTPClientError` (read timeout, connection closed,
# a response cut short); Python's own ConnectionError (reset, broken pipe) is one too.
_NETWORK_CLASSES = frozenset({"ConnectionError", "HTTPClientError", "IncompleteReadError"})
_REGION_CLASSES = frozenset({"NoRegionError", "InvalidRegionError"})
_CREDENTIAL_CLASSES = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "ProfileNotFound",
        "TokenRetrievalError",
        "SSOError",
        "NoAuthTokenError",
    }
)
_ENDPOINT_CLASSES = frozenset(
    {"UnknownEndpointError", "EndpointResolutionError", "InvalidEndpointConfigurationError"}
)
_SETUP_CLASSES = _REGION_CLASSES | _CREDENTIAL_CLASSES | _ENDPOINT_CLASSES | {"InvalidConfigError"}

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


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore `ClientError` (duck-typed: no botocore import)."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping):
            code = error.get("Code")
            return str(code) if code is not None else None
    return None


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        metadata = response.get("ResponseMetadata")
        if isinstance(metadata, Mapping):
            status = metadata.get("HTTPStatusCode")
            return status if isinstance(status, int) else None
    return None


def classify(exc: BaseException) -> AwsErrorKind:
    """The kind of an error from an AWS call: the only place cdc decides it."""
    code = error_code(exc)
    if code is not None:
        if code in THROTTLING_CODES:
            return AwsErrorKind.THROTTLING
        if code in TRANSIENT_CODES:
            return AwsErrorKind.TRANSIENT
        if code in SETUP_CODES:
            return AwsErrorKind.SETUP
        status = _http_status(exc)
        if status is not None and status >= 500:
            return AwsErrorKind.TRANSIENT
        return AwsErrorKind.PERMANENT
    names = _class_names(exc)
    if names & _NETWORK_CLASSES:
        return AwsErrorKind.TRANSIENT
    if names & _SETUP_CLASSES:
        return AwsErrorKind.SETUP
    return AwsErrorKind.PERMANENT


def is_throttling(exc: BaseException) -> bool:
    return classify(exc) is AwsErrorKind.THROTTLING


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx, or the network: worth retrying the same request later."""
    return classify(exc) in (AwsErrorKind.THROTTLING, AwsErrorKind.TRANSIENT)


def is_network(exc: BaseException) -> bool:
    """The network failed (as opposed to AWS answering with an error)."""
    return error_code(exc) is None and bool(_class_names(exc) & _NETWORK_CLASSES)


class AwsSetupError(CdcError):
    """An AWS setup mistake (region, credentials, endpoint, permission, a name): the
    message is one line saying what to fix."""


def explain(exc: BaseException) -> str | None:
    """One line saying what to fix, for an AWS setup mistake or an endpoint that could
    not be reached (after the retries); None for anything else. Never prints secrets:
    botocore's messages name variables and endpoints, not their values."""
    names = _class_names(exc)
    code = error_code(exc)
    if names & _REGION_CLASSES:
        return (
            "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or the region of "
            "AWS_PROFILE), pass --region, or give an ARN, which names its region"
        )
    if names & _CREDENTIAL_CLASSES:
        return (
            f"no usable AWS credentials ({exc}): set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where a role is available"
        )
    if names & _ENDPOINT_CLASSES:
        return f"no AWS endpoint ({exc}): check AWS_REGION and AWS_ENDPOINT_URL"
    if code is None and names & _NETWORK_CLASSES:
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url")
        where = f" at {endpoint}" if endpoint else ""
        return (
            f"cannot reach AWS{where} ({exc}): check AWS_ENDPOINT_URL (and "
            "AWS_ENDPOINT_URL_<SERVICE>), the region and the network"
        )
    if code in CREDENTIAL_CODES:
        return (
            f"AWS rejected the credentials ({code}: {_message(exc)}): check "
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_PROFILE"
        )
    if code in PERMISSION_CODES:
        return (
            f"AWS denied {_operation(exc)} ({_message(exc)}): grant that permission to "
            "the role or user cdc runs as"
        )
    if code in NOT_FOUND_CODES:
        return f"{_operation(exc)}: {_message(exc)}: check the name or ARN and its region"
    return None


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, Mapping) else None
    message = error.get("Message") if isinstance(error, Mapping) else None
    return str(message) if message else str(exc)


def _operation(exc: BaseException) -> str:
    return str(getattr(exc, "operation_name", None) or "the request")


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


# --- AttributeValues: botocore's form <-> the wire (Lambda event) form ---------------


def to_wire(av: Any) -> Any:
    """One AttributeValue as a Lambda event carries it: binary as base64 text."""
    if not isinstance(av, Mapping) or len(av) != 1:
        return av  # not ours to judge here: the apply path validates and dead-letters
    ((tag, payload),) = av.items()
    if tag == "B" and isinstance(payload, bytes | bytearray):
        return {"B": _b64(payload)}
    if tag == "BS" and isinstance(payload, list):
        return {"BS": [_b64(v) if isinstance(v, bytes | bytearray) else v for v in payload]}
    if tag == "M" and isinstance(payload, Mapping):
        return {"M": image_to_wire(payload)}
    if tag == "L" and isinstance(payload, list):
        return {"L": [to_wire(v) for v in payload]}
    return {tag: payload}


def image_to_wire(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: to_wire(av) for name, av in image.items()}


def from_wire(av: Any) -> Any:
    """The inverse of `to_wire`, for values sent back to AWS (ExclusiveStartKey, Keys):
    given text for a blob, botocore would base64-encode the text itself."""
    if not isinstance(av, Mapping) or len(av) != 1:
        return av
    ((tag, payload),) = av.items()
    if tag == "B" and isinstance(payload, str):
        return {"B": base64.b64decode(payload)}
    if tag == "BS" and isinstance(payload, list):
        return {"BS": [base64.b64decode(v) if isinstance(v, str) else v for v in payload]}
    if tag == "M" and isinstance(payload, Mapping):
        return {"M": image_from_wire(payload)}
    if tag == "L" and isinstance(payload, list):
        return {"L": [from_wire(v) for v in payload]}
    return {tag: payload}


def image_from_wire(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: from_wire(av) for name, av in image.items()}


def _b64(data: bytes | bytearray) -> str:
    return base64.b64encode(data).decode("ascii")


def epoch_seconds(value: datetime) -> int | float:
    """A datetime as Lambda's ApproximateCreationDateTime: epoch seconds (botocore
    parses the API's number into a datetime; Lambda passes the number through)."""
    seconds = value.timestamp()
    return int(seconds) if seconds.is_integer() else seconds


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
