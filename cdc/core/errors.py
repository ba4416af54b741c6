"""The project's exceptions: one root, a short flat list."""

from __future__ import annotations


class CdcError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(CdcError):
    """The configuration is missing or invalid; the message names the setting."""


class InvalidInvocation(CdcError):
    """The Lambda event is not a batch of records (no `Records` list)."""


class RecordError(CdcError):
    """A permanent problem with one record: it is dead-lettered, never retried as is.

    `kind` is a short stable label (``malformed``, ``decode``, ``conversion``, ...) that
    lands in `cdc_dead_letters.error_class` so operators can filter on it.
    """

    kind = "record"

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class MalformedRecord(RecordError):
    """The record is not a DynamoDB stream record (README: Failure handling)."""

    kind = "malformed"


class DecodeError(RecordError):
    """An AttributeValue of the wrong shape; the message names the attribute path."""

    kind = "decode"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class NameCollision(CdcError):
    """Two source names map to one database identifier (a config error or a record error,
    depending on where the names came from)."""
