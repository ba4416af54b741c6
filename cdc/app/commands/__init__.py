"""One module per `cdc` subcommand.

Each module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(settings, args) ->
exit code`, and keeps heavy imports (boto3, alembic) inside `run` so `cdc --help` and
the other commands stay fast.
"""

# The order is the order of `cdc --help`.
MODULES = (
    "replay",
    "migrate",
    "revision",
    "dlq",
    "purge",
    "backfill",
    "tail",
    "verify",
    "redrive_failures",
    "infer_mapping",
    "status",
    "repair",
)
