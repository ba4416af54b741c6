"""`cdc migrate`: run the alembic migrations."""

from __future__ import annotations

import argparse
import sys

from cdc.config import Settings

NAME = "migrate"
HELP = "create or upgrade the bookkeeping and configured tables (alembic)"
DESCRIPTION = (
    "Run the alembic migrations against the configured database: cdc's own revisions "
    "(the bookkeeping tables) and yours (written by `cdc revision` into the directory "
    "named by `migrations` in the mapping file or CDC_MIGRATIONS_DIR), then create the "
    "mapping's tables no revision created. Exits 1 while the database still differs "
    "from the mapping, naming each difference."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--revision", default="heads", help="target revision (default: heads, every branch)"
    )
    parser.add_argument(
        "--sql", action="store_true", help="print the SQL (offline mode) instead of running it"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    from cdc.app.engines import engine_for
    from cdc.sql.migrations import upgrade

    differences = upgrade(engine_for(settings), settings, args.revision, sql=args.sql)
    if args.sql:
        return 0
    print(f"migrated {settings.masked_url()} to {args.revision}")
    if differences:
        print(
            f"cdc: the database differs from the mapping in {len(differences)} way(s):",
            file=sys.stderr,
        )
        for line in differences:
            print(f"  {line}", file=sys.stderr)
        print(
            'cdc: write a revision with `cdc revision -m "..."`, review it, then run '
            "`cdc migrate` again (until then, records of a table whose columns cannot hold "
            "what the mapping promises are reported, not written)",
            file=sys.stderr,
        )
        return 1
    return 0
