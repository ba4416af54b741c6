"""`cdc revision -m MESSAGE`: write a migration of the mapping into the user's directory."""

from __future__ import annotations

import argparse

from cdc.config import Settings

NAME = "revision"
HELP = "write an alembic revision of the mapping into your migrations directory"
DESCRIPTION = (
    "Compare the database (migrated: run `cdc migrate` first) with the mapping file and "
    "write the difference as an alembic revision into your migrations directory "
    "(`migrations` in the mapping file, relative to it, or CDC_MIGRATIONS_DIR), on the "
    "branch `mapping`, apart from cdc's own revisions. Review it, then run `cdc migrate`."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m", "--message", required=True, help='what the revision does ("orders: add coupon")'
    )
    parser.add_argument(
        "--empty",
        action="store_true",
        help="write an empty revision to fill in by hand (no comparison with the database)",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    from cdc.app.engines import engine_for
    from cdc.sql.migrations import write_revision

    path = write_revision(engine_for(settings), settings, args.message, empty=args.empty)
    print(f"wrote {path}: review it, then run `cdc migrate`")
    return 0
