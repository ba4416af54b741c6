"""The database fixture's parts, under the names the record-handling tests import them
by (tests/databases.py has them): `EVERY_DATABASE` is every database under test."""

from __future__ import annotations

from tests.databases import DATABASES, Database, open_database

EVERY_DATABASE = DATABASES

__all__ = ["EVERY_DATABASE", "Database", "open_database"]
