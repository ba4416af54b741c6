"""`cdc infer-mapping TABLE`: propose a mapping file from a sample of the data."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdc.app.commands.backfill import _positive_int
from cdc.config import Settings

if TYPE_CHECKING:
    from cdc.aws.clients import Clients
    from cdc.core.proposal import Sample

NAME = "infer-mapping"
HELP = "propose a mapping file (typed columns, or entity tables) from a sample of the data"
DESCRIPTION = (
    "Read a bounded sample of a DynamoDB table (a Scan of --sample items), or what has "
    "accumulated in its replica's `item`/`extra` JSON columns (--from-replica), and print "
    "a mapping file for it: a column type per attribute whose values agree (numeric "
    "precision and scale as observed, ISO-8601 and epoch timestamps, booleans, sets, "
    "maps and lists as jsonb), with comments saying how much of the sample each choice "
    "covers. Items of a single-table design, told apart by a type attribute or by key "
    "prefixes, become entities: a table each, with key columns parsed out of the key and "
    "lists of maps as child tables. Review it before use."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", metavar="TABLE", help="table name or table ARN")
    parser.add_argument(
        "--sample",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="read at most N items (default 1000)",
    )
    parser.add_argument(
        "--from-replica",
        action="store_true",
        help="read the replica's item/extra columns (the configured database) instead "
        "of scanning the source; needs no AWS access",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE, not stdout")
    parser.add_argument("--region", help="AWS region (default: from the ARN or the environment)")


def run(settings: Settings, args: argparse.Namespace, *, clients: Clients | None = None) -> int:
    from cdc.core.proposal import render

    sample = (
        _from_replica(settings, args.table, args.sample)
        if args.from_replica
        else _from_source(settings, args, clients)
    )
    text = render(sample)
    _check_loads(text)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: {len(sample.items)} items read", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _from_source(settings: Settings, args: argparse.Namespace, clients: Clients | None) -> Sample:
    from cdc.aws import clients as aws
    from cdc.aws.reads import scan_pages
    from cdc.core.proposal import Sample

    name, arn_region = aws.table_name_and_region(args.table)
    clients = clients or aws.Clients(args.region or settings.region)
    client = clients.dynamodb(args.region or arn_region)
    source = aws.describe_table(client, name)
    items: list[dict[str, Any]] = []
    for page in scan_pages(client, source.name, limit=min(args.sample, 1000)):
        items.extend(page.items[: args.sample - len(items)])
        if len(items) >= args.sample:
            break
    return Sample(source.name, source.keys, items, f"a Scan of {len(items)} items")


def _from_replica(settings: Settings, table: str, limit: int) -> Sample:
    from cdc.app.engines import engine_for
    from cdc.core.proposal import Sample
    from cdc.sql.samples import read_sample

    engine = engine_for(settings)
    try:
        found = read_sample(engine, settings, table, limit)
    finally:
        engine.dispose()
    config = settings.tables.get(table)
    column = "extra" if config is not None and config.typed else "item"
    return Sample(
        table,
        found.keys,
        found.items,
        f"the `{column}` column of {len(found.items)} rows of {found.table}",
        plain=True,
        declared=found.declared or None,
    )


def _check_loads(text: str) -> None:
    """The proposal must load as a mapping file (a bug of ours otherwise)."""
    from cdc.config import load_settings

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "proposed.toml"
        path.write_text(text, encoding="utf-8")
        load_settings({"CDC_CONFIG": str(path)})
