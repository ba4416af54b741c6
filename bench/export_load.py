"""Export loads: items/s per worker on each database, next to the stream path.

    python bench/export_load.py [--items 20000] [--files 8] [--workers 1,4]
                                [--batch 1000] [--databases postgresql,mariadb,sqlite]

An export of `--items` items in `--files` data files is written into moto's in-process
S3 in the documented layout, then loaded with `ExportLoad` (the code `cdc backfill
--from-export` runs) with each worker count, into a fresh schema each time. The stream
path applies the same items as INSERT records with real sequence numbers through
`Replicator.process`, one batch at a time (one Lambda's work). S3 is in-process, so the
figures are the database's and cdc's cost, not the network's. It prints a table and
asserts nothing; the figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REGION = "eu-central-1"
BUCKET = "bench-exports"


def item(i: int) -> dict[str, Any]:
    return {
        "Id": {"S": f"order-{i:08}"},
        "customer": {"S": f"customer {i % 977}"},
        "total": {"N": f"{i % 10000}.{i % 100:02}"},
        "status": {"S": ("new", "paid", "shipped")[i % 3]},
        "tags": {"SS": ["a", f"t{i % 7}"]},
        "lines": {
            "L": [{"M": {"sku": {"S": f"sku-{j}"}, "qty": {"N": str(j + 1)}}} for j in range(3)]
        },
    }


def write_export(s3: Any, table_arn: str, items: int, files: int) -> str:
    folder = f"bench/AWSDynamoDB/{uuid.uuid4().hex[:16]}"
    entries = []
    for n in range(files):
        text = "".join(json.dumps({"Item": item(i)}) + "\n" for i in range(n, items, files))
        body = gzip.compress(text.encode())
        key = f"{folder}/data/{uuid.uuid4().hex}.json.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        md5 = hashlib.md5(body).digest()
        count = len(range(n, items, files))
        entries.append(
            {
                "itemCount": count,
                "md5Checksum": base64.b64encode(md5).decode(),
                "etag": md5.hex(),
                "dataFileS3Key": key,
            }
        )
    manifest = f"{folder}/manifest-files.json"
    s3.put_object(Bucket=BUCKET, Key=manifest, Body="".join(json.dumps(e) + "\n" for e in entries))
    summary = {
        "version": "2020-06-30",
        "exportArn": f"{table_arn}/export/{folder.rsplit('/', 1)[-1]}",
        "tableArn": table_arn,
        "exportTime": "2026-11-26T10:00:00.000Z",
        "manifestFilesS3Key": manifest,
        "itemCount": items,
        "outputFormat": "DYNAMODB_JSON",
        "exportType": "FULL_EXPORT",
    }
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/manifest-summary.json", Body=json.dumps(summary))
    return f"s3://{BUCKET}/{folder}"


class Target:
    """A fresh schema (database on MariaDB, file on SQLite) per measurement."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind, self.url = kind, url
        self.made: list[tuple[Any, str | None]] = []

    def fresh(self) -> tuple[Any, Any]:
        from sqlalchemy import text

        from cdc.config import Settings, parse_database_url
        from cdc.sql.engines import make_engine

        if self.kind == "sqlite":
            path = Path(tempfile.mkdtemp()) / "bench.db"
            engine = make_engine(parse_database_url(f"sqlite:///{path}", "bench"))
            self.made.append((engine, None))
            return engine, Settings(database_url=engine.url, schema=None)
        assert self.url is not None
        engine = make_engine(parse_database_url(self.url, "bench"), pool_size=10, max_overflow=10)
        schema = f"cdc_bench_exp_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        self.made.append((engine, schema))
        return engine, Settings(database_url=engine.url, schema=schema)

    def close(self) -> None:
        from sqlalchemy import text

        for engine, schema in self.made:
            if schema is not None:
                cascade = " CASCADE" if self.kind == "postgresql" else ""
                with engine.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema}{cascade}"))
            engine.dispose()


def export_rate(
    clients: Any, url: str, source: Any, target: Target, workers: int, batch: int
) -> float:
    from cdc.jobs.export_load import Export, ExportLoad, LoadOptions
    from cdc.sql.migrations import ensure_bookkeeping

    engine, settings = target.fresh()
    ensure_bookkeeping(engine, settings.schema, settings)  # not on the clock
    export = Export.open(clients.s3(), url, source.arn)
    load = ExportLoad(
        clients.s3(),
        export,
        source,
        engine,
        settings,
        LoadOptions(workers=workers, batch_lines=batch, poll=0.05),
    )
    started = time.perf_counter()
    report = load.run()
    seconds = time.perf_counter() - started
    assert report.complete, report.errors
    return report.items_read / seconds


def stream_rate(source: Any, items: int, target: Target, batch: int) -> float:
    from cdc.jobs.replicate import Replicator
    from cdc.sql.migrations import ensure_bookkeeping

    engine, settings = target.fresh()
    ensure_bookkeeping(engine, settings.schema, settings)
    replicator = Replicator(engine, settings)
    stream_arn = f"{source.arn}/stream/2026-11-26T10:00:00.000"
    elapsed = 0.0
    for start in range(0, items, batch):
        records = []
        for i in range(start, min(items, start + batch)):
            image = item(i)
            records.append(
                {
                    "eventID": str(i),
                    "eventName": "INSERT",
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": REGION,
                    "eventSourceARN": stream_arn,
                    "dynamodb": {
                        "Keys": {"Id": image["Id"]},
                        "NewImage": image,
                        "SequenceNumber": str(10**20 + i),
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                    },
                }
            )
        began = time.perf_counter()
        result = replicator.process(records)
        elapsed += time.perf_counter() - began
        assert not result.failed, result.error
    return items / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--databases", default="postgresql,mariadb,sqlite")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "CDC_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("CDC_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    )
    args = parser.parse_args()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        os.environ.setdefault(name, value)
    from moto import mock_aws

    from cdc.aws.clients import Clients, describe_table

    workers = [int(w) for w in args.workers.split(",")]
    urls = {"postgresql": args.database_url, "mariadb": args.mysql_url, "sqlite": None}
    with mock_aws():
        clients = Clients(REGION)
        ddb = clients.dynamodb()
        ddb.create_table(
            TableName="BenchOrders",
            KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        clients.s3().create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        source = describe_table(ddb, "BenchOrders")
        url = write_export(clients.s3(), source.arn, args.items, args.files)
        print(f"{args.items} items in {args.files} files, batches of {args.batch}")
        print(f"{'database':<12} {'path':<22} {'items/s':>10} {'items/s per worker':>20}")
        for kind in args.databases.split(","):
            target = Target(kind, urls[kind])
            try:
                rate = stream_rate(source, args.items, target, args.batch)
                print(f"{kind:<12} {'stream (1 batch/time)':<22} {rate:>10,.0f} {rate:>20,.0f}")
                for n in workers:
                    if kind == "sqlite" and n > 1:
                        continue  # one writer at a time: SQLite loads with one worker
                    rate = export_rate(clients, url, source, target, n, args.batch)
                    label = f"export, {n} worker{'s' if n > 1 else ''}"
                    print(f"{kind:<12} {label:<22} {rate:>10,.0f} {rate / n:>20,.0f}")
            except Exception as exc:  # a database that is not there: say so, go on
                print(f"{kind:<12} n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})")
            finally:
                target.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
