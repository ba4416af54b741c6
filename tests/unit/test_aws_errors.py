"""AWS errors are classified in one place (`cdc.aws.clients.classify`), with the exceptions
botocore really raises: throttling and the network are retried, setup mistakes are
explained in one line, the rest is raised as is."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)

from cdc.aws import clients as aws
from cdc.aws import errors as aws_errors
from cdc.aws.errors import AwsErrorKind, classify, explain

ENDPOINT = "http://127.0.0.1:9"


def client_error(code: str, status: int = 400, operation: str = "DescribeTable") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} says no"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


NETWORK = [
    EndpointConnectionError(endpoint_url=ENDPOINT),
    ConnectTimeoutError(endpoint_url=ENDPOINT),
    ReadTimeoutError(endpoint_url=ENDPOINT),
    ConnectionClosedError(endpoint_url=ENDPOINT),
    ProxyConnectionError(proxy_url="http://proxy:3128", error="refused"),
    SSLError(endpoint_url=ENDPOINT, error="certificate verify failed"),
    ConnectionResetError("reset by peer"),
]


@pytest.mark.parametrize("error", NETWORK, ids=lambda e: type(e).__name__)
def test_every_network_error_is_transient(error: Exception) -> None:
    assert classify(error) is AwsErrorKind.TRANSIENT
    assert aws_errors.is_transient(error) and aws_errors.is_network(error)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("ProvisionedThroughputExceededException"), AwsErrorKind.THROTTLING),
        (client_error("ThrottlingException"), AwsErrorKind.THROTTLING),
        (client_error("LimitExceededException"), AwsErrorKind.THROTTLING),
        (client_error("InternalServerError", 500), AwsErrorKind.TRANSIENT),
        (client_error("SomethingNew", 503), AwsErrorKind.TRANSIENT),  # any 5xx
        (client_error("AccessDeniedException"), AwsErrorKind.SETUP),
        (client_error("UnrecognizedClientException"), AwsErrorKind.SETUP),
        (client_error("ExpiredTokenException"), AwsErrorKind.SETUP),
        (client_error("ResourceNotFoundException"), AwsErrorKind.SETUP),
        (client_error("AWS.SimpleQueueService.NonExistentQueue"), AwsErrorKind.SETUP),
        (NoRegionError(), AwsErrorKind.SETUP),
        (NoCredentialsError(), AwsErrorKind.SETUP),
        (
            PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
            AwsErrorKind.SETUP,
        ),
        (ProfileNotFound(profile="nope"), AwsErrorKind.SETUP),
        (client_error("ValidationException"), AwsErrorKind.PERMANENT),
        (ValueError("a bug"), AwsErrorKind.PERMANENT),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_classification(error: Exception, kind: AwsErrorKind) -> None:
    assert classify(error) is kind


def test_explain_says_what_to_fix_in_one_line() -> None:
    assert "AWS_REGION" in (explain(NoRegionError()) or "")
    assert "AWS_ACCESS_KEY_ID" in (explain(NoCredentialsError()) or "")
    reach = explain(EndpointConnectionError(endpoint_url=ENDPOINT)) or ""
    assert f"cannot reach AWS at {ENDPOINT}" in reach and "AWS_ENDPOINT_URL" in reach
    assert "AWS_SECRET_ACCESS_KEY" in (explain(client_error("UnrecognizedClientException")) or "")
    denied = explain(client_error("AccessDeniedException", operation="Scan")) or ""
    assert denied.startswith("AWS denied Scan")
    for message in (reach, denied):
        assert "\n" not in message
    # not a setup mistake: nothing to explain, the error is raised as it is
    assert explain(client_error("ValidationException")) is None
    assert explain(client_error("ThrottlingException")) is None
    assert explain(ValueError("a bug")) is None


def test_call_retries_network_errors_with_backoff_then_succeeds() -> None:
    failures = [
        EndpointConnectionError(endpoint_url=ENDPOINT),
        ReadTimeoutError(endpoint_url=ENDPOINT),
    ]
    sleeps: list[float] = []

    def operation() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert aws.call(operation, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 2


def test_call_raises_setup_mistakes_at_once() -> None:
    calls = []

    def operation() -> None:
        calls.append(1)
        raise client_error("AccessDeniedException")

    with pytest.raises(ClientError):
        aws.call(operation, sleep=lambda s: None)
    assert len(calls) == 1
