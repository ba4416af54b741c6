"""Peak RSS of one batch through the handler, in a fresh process (run by bench.micro).

    python -m bench.rss_probe --size 1000 --base 900000000 --database-url URL --schema S

Prints one JSON line: RSS peaks (MiB) after the imports, after the container's first
invocation (a one-record batch: engine, connection, bookkeeping and table checks), after
building the event, and after the batch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys


def maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux, `getrusage(RUSAGE_SELF).ru_maxrss` of an exec'ed child starts at the RSS
    of the process that forked it (the kernel folds the old address space's high-water
    mark in at exec), so a probe started by a 100 MB parent would read ≥ 100 MB before
    doing anything. /proc/self/status's VmHWM is the peak of this process's own address
    space; ru_maxrss is the fallback where there is no /proc.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--base", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--workload", default="all-types")
    args = parser.parse_args()
    os.environ["CDC_DATABASE_URL"] = args.database_url
    os.environ["CDC_SCHEMA"] = args.schema

    import cdc.handler
    from bench.workload import FakeContext, event, single_batch

    after_imports = maxrss_mb()
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # its logs
        warm_up = single_batch(1, base=args.base - 1, kind=args.workload)
        cdc.handler.handler(event(warm_up), FakeContext())
        after_first = maxrss_mb()
        batch = event(single_batch(args.size, base=args.base, kind=args.workload))
        after_event = maxrss_mb()
        response = cdc.handler.handler(batch, FakeContext())
        peak = maxrss_mb()
    boto3_imported = "boto3" in sys.modules
    cdc.handler.reset()

    import json

    print(
        json.dumps(
            {
                "size": args.size,
                "workload": args.workload,
                "after_imports_mb": round(after_imports, 1),
                "after_first_invocation_mb": round(after_first, 1),
                "after_event_mb": round(after_event, 1),
                "peak_mb": round(peak, 1),
                "failures": len(response.get("batchItemFailures", [])),
                "boto3_imported": boto3_imported,
            }
        )
    )


if __name__ == "__main__":
    main()
