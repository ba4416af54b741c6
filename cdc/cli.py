"""The `cdc` command (also `python -m cdc`). Each subcommand is a module of
`cdc.commands`; this file only builds the parser and reports errors."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from types import ModuleType

from sqlalchemy.exc import SQLAlchemyError

from cdc.commands import MODULES
from cdc.config import DEFAULT_CLI_URL, load_settings
from cdc.dberrors import describe
from cdc.errors import CdcError

_DURATION = re.compile(r"([0-9]+)([smhd])")  # ASCII digits only
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `48h`, `7d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 15m, 48h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _commands() -> list[ModuleType]:
    found = []
    for name in MODULES:
        try:
            found.append(importlib.import_module(f"cdc.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"cdc.commands.{name}":
                raise
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="cdc",
        description="Replicate DynamoDB Streams into PostgreSQL, SQLite or MySQL/MariaDB.",
        epilog="The database comes from CDC_DATABASE_URL (or the TOML file named by "
        f"CDC_CONFIG); without one, the CLI uses {DEFAULT_CLI_URL}.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and details")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    by_name = {}
    for module in _commands():
        sub = subparsers.add_parser(
            module.NAME, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP)
        )
        module.add_arguments(sub)
        by_name[module.NAME] = module
    return parser, by_name


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(default_url=DEFAULT_CLI_URL)
        return int(commands[args.command].run(settings, args))
    except CdcError as exc:
        print(f"cdc: error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        # The driver's message, never SQLAlchemy's echo of statements and parameters.
        kind, message = describe(exc)
        print(f"cdc: database error: {kind}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cdc: interrupted", file=sys.stderr)
        return 130
