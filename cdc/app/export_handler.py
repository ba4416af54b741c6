"""The second Lambda entry point, `cdc.app.export_handler.handler`: an export load fanned
out by the optional Step Functions state machine of deploy/template.yaml (README:
`cdc backfill`, "On AWS: one Lambda invocation per data file").

Two actions, both idempotent:

* `{"action": "plan", "exportUrl": "s3://…/AWSDynamoDB/ID", "maxConcurrency": "10"}`
  checks the export's manifests, registers its files in `cdc_export_files` and answers
  `{"exportUrl": …, "files": [0, 1, …], "items": N, "maxConcurrency": 10}`: the
  Distributed Map's items and concurrency.
* `{"action": "load", "exportUrl": …, "fileNo": n}` claims file n and applies it from
  its saved line until it is done or the invocation is about to end, then answers
  `{"exportUrl", "fileNo", "done", "busy", "linesDone"}`. `done: false` makes the state
  machine invoke again (the file continues from the saved line); `busy: true` says
  another worker holds the file's lease (a `cdc backfill` process, or an invocation
  that timed out), and the state machine waits before trying again.

Settings, engine and the export's manifests are kept for the life of the container.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from cdc.app.engines import engine_for
from cdc.config import Settings, load_settings
from cdc.core.deadline import Deadline
from cdc.core.errors import InvalidInvocation

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cdc.aws.clients import Clients, SourceTable
    from cdc.jobs.export_load import Export

log = logging.getLogger("cdc.export_handler")

# Seconds kept back from the invocation's end: the batch under way must commit and its
# position be saved before Lambda stops the function.
RESERVE_S = float(os.environ.get("CDC_EXPORT_RESERVE_S", "20"))
LEASE_S = float(os.environ.get("CDC_EXPORT_LEASE_S", "120"))
BATCH_LINES = int(os.environ.get("CDC_EXPORT_BATCH_LINES", "1000"))

_state: dict[str, Any] = {}


def _container() -> tuple[Settings, Engine, Clients]:
    if "settings" not in _state:
        from cdc.aws.clients import Clients

        settings = load_settings()
        log.setLevel(settings.log_level)
        _state["settings"] = settings
        _state["engine"] = engine_for(settings)
        _state["clients"] = Clients()
    return _state["settings"], _state["engine"], _state["clients"]


def _export(url: str) -> tuple[Export, SourceTable]:
    """The checked export and its table, read once per container."""
    cached = _state.setdefault("exports", {}).get(url)
    if cached is None:
        from cdc.aws.clients import Arn, describe_table
        from cdc.jobs.export_load import Export

        _, _, clients = _container()
        from cdc.aws.exports import ExportLocation, read_summary

        summary = read_summary(clients.s3(), ExportLocation.parse(url))
        arn = Arn.parse(summary.table_arn)
        region = arn.region if arn else None
        source = describe_table(clients.dynamodb(region), summary.table_name)
        cached = (Export.open(clients.s3(), url, source.arn), source)
        _state["exports"][url] = cached
    export: Export = cached[0]
    table: SourceTable = cached[1]
    return export, table


def handler(event: Any, context: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("exportUrl"), str):
        raise InvalidInvocation(
            'expected {"action": "plan" | "load", "exportUrl": "s3://…", "fileNo": n}'
        )
    from cdc.jobs.export_load import ExportLoad, LoadOptions, LoadReport

    settings, engine, clients = _container()
    url = event["exportUrl"]
    export, source = _export(url)
    options = LoadOptions(workers=1, batch_lines=BATCH_LINES, lease=LEASE_S)
    load = ExportLoad(clients.s3(), export, source, engine, settings, options)
    if event.get("action") == "plan":
        load.prepare()
        return {
            "exportUrl": url,
            "files": [f.number for f in export.files],
            "items": export.summary.item_count,
            # The Distributed Map's MaxConcurrencyPath: the template's parameter, which
            # reaches the plan as text (DefinitionSubstitutions are strings).
            "maxConcurrency": int(event.get("maxConcurrency") or 10),
        }
    if event.get("action") != "load" or not isinstance(event.get("fileNo"), int):
        raise InvalidInvocation('expected "action": "plan", or "load" with an integer "fileNo"')
    file_no: int = event["fileNo"]
    from cdc.aws.exports import ExportError
    from cdc.sources.exports import ExportFileError
    from cdc.sql.export_files import worker_id

    load.prepare()  # a no-op after the plan; makes a lone invocation safe too
    me = f"lambda:{getattr(context, 'aws_request_id', '')}:{worker_id()}"
    answer: dict[str, Any] = {"exportUrl": url, "fileNo": file_no, "done": False, "busy": False}
    claim = load.store.claim(me, LEASE_S, file_no=file_no)
    if claim is None:
        row = load.store.file(file_no)
        if row is None:
            raise InvalidInvocation(f"{url} has no data file {file_no}")
        if row.error:
            raise RuntimeError(row.error)  # the state machine's execution fails with it
        answer.update(done=row.done, busy=not row.done, linesDone=row.lines_done)
        return answer
    report = LoadReport(source.name, export.summary.export_arn, url)
    try:
        done = load.load_file(
            claim,
            load.replicator(),
            me,
            report,
            deadline=Deadline.from_context(context),
            reserve=RESERVE_S,
        )
    except (ExportError, ExportFileError) as exc:
        # The export itself is at fault: the file stops the load until it is run again.
        load.store.release(file_no, me, error=str(exc))
        raise
    except BaseException:
        load.store.release(file_no, me)  # e.g. the database: the state machine retries
        raise
    if not done:
        load.store.release(file_no, me)  # the next invocation continues from the saved line
    log.info(
        "export file %d of %s: %d lines done, %s",
        file_no,
        url,
        claim.lines_done,
        "complete" if done else "continues",
    )
    answer.update(done=done, linesDone=claim.lines_done)
    return answer


def reset() -> None:
    """Forget the container's state, as a new container would (tests)."""
    engine = _state.get("engine")
    if engine is not None:
        engine.dispose()
    _state.clear()
