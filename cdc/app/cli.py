"""The `cdc` command (also `python -m cdc`). Each subcommand is a module of
`cdc.app.commands`; this file only builds the parser and reports errors."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from datetime import timedelta
from types import ModuleType

from sqlalchemy.exc import SQLAlchemyError

from cdc.app.commands import MODULES
from cdc.config import DEFAULT_CLI_URL, databases, load_settings
from cdc.core.errors import CdcError
from cdc.sql.errors import describe

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
            found.append(importlib.import_module(f"cdc.app.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"cdc.app.commands.{name}":
                raise
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="cdc",
        description="Replicate DynamoDB Streams into "
        f"{databases.listing([f.label for f in databases.registered()], 'or')}.",
        epilog="The database comes from CDC_DATABASE_URL (or the TOML file named by "
        f"CDC_CONFIG); without one, the CLI uses {DEFAULT_CLI_URL}.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log details; a traceback with errors"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    by_name = {}
    for module in _commands():
        sub = subparsers.add_parser(
            module.NAME, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP)
        )
        module.add_arguments(sub)
        # Also after the command (`cdc tail ARN -v`); SUPPRESS keeps an absent flag
        # from overwriting one given before the command.
        sub.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
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
        return _fail(f"cdc: error: {exc}", 2, args.verbose)
    except SQLAlchemyError as exc:
        # The driver's message, never SQLAlchemy's echo of statements and parameters.
        kind, message = describe(exc)
        return _fail(f"cdc: database error: {kind}: {message}", 2, args.verbose)
    except KeyboardInterrupt:
        print("cdc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from cdc.aws.errors import explain

        # An AWS setup mistake (region, credentials, endpoint, a name) is one line
        # saying what to fix; anything else is a bug or an outage we could not ride
        # out: one line too, and the traceback with -v.
        setup = explain(exc)
        if setup is not None:
            return _fail(f"cdc: error: {setup}", 2, args.verbose)
        return _fail(
            f"cdc: unexpected error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
            1,
            args.verbose,
        )


def _fail(message: str, code: int, verbose: bool) -> int:
    """Report an error on one line of stderr; with -v, its traceback first."""
    if verbose:
        traceback.print_exc(file=sys.stderr)
    print(message.replace("\r", " ").replace("\n", " "), file=sys.stderr)
    return code
