"""`cdc migrate`: run the alembic migrations."""

from __future__ import annotations

import argparse

from cdc.config import Settings

NAME = "migrate"
HELP = "create or upgrade the bookkeeping and configured tables (alembic)"
DESCRIPTION = (
    "Run the alembic migrations in migrations/ against the configured database: the "
    "bookkeeping tables, and every revision generated from the mapping file."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    parser.add_argument(
        "--sql", action="store_true", help="print the SQL (offline mode) instead of running it"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    from cdc.db import engine_for
    from cdc.migrate import upgrade

    upgrade(engine_for(settings), settings, args.revision, sql=args.sql)
    if not args.sql:
        print(f"migrated {settings.masked_url()} to {args.revision}")
    return 0
