"""AWS errors, classified in one place: throttling and the network are retried, setup
mistakes (region, credentials, permissions, missing resources) are one line naming
the fix (README: Commands)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING

from cdc.core.errors import CdcError

if TYPE_CHECKING:
    pass


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
