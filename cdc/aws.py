"""The AWS edge: boto3 clients made on demand, error codes, and wire shapes.

boto3 is imported inside functions only. The Lambda handler never needs it unless an
AWS feature is configured, and importing boto3 costs a cold start ~0.3 s, so nothing the
handler imports may import it at module level (DESIGN §1).

The low-level clients hand back AttributeValues almost as the wire carries them, with
one difference that matters here: botocore decodes binary (`B`, `BS`) into `bytes`,
while a Lambda event carries base64 text. `to_wire` / `from_wire` convert between the
two so every record we build looks exactly like one Lambda would deliver.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_sqs import SQSClient

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
    }
)
# Server-side hiccups worth retrying like throttling.
TRANSIENT_CODES = THROTTLING_CODES | {
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
}

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


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx, or the network: worth retrying the same request later."""
    if error_code(exc) in TRANSIENT_CODES:
        return True
    # botocore's connection errors (EndpointConnectionError, ReadTimeoutError, ...)
    # all derive from this class; matched by name so botocore stays unimported.
    return any(cls.__name__ == "HTTPClientError" for cls in type(exc).__mro__)


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
