"""Store the server_engines corpus (bench.server_corpus) through the storage interface:
`python -m bench.server_populate --db TARGET --traces N --namespace NS` opens TARGET (a
SQLite path or a `postgresql://` URL) with `open_storage` and calls `upsert_many` with
BATCH traces at a time, in order of i, so the storage assigns insertion order as the corpus
expects. A process of its own, so the two engines fill side by side on two cores. Prints
one JSON line: the seconds spent inside upsert_many (building the items excluded)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

from bench.server_corpus import item
from tracesd import logs
from tracesd.server.storage import open_storage

BATCH = 5000


async def populate(target: str, traces: int, namespace: str) -> float:
    storage = await open_storage(target, legacy_namespace=namespace)
    spent = 0.0
    try:
        for start in range(0, traces, BATCH):
            items = [item(i) for i in range(start, min(traces, start + BATCH))]
            began = time.perf_counter()
            details = await storage.upsert_many(items, namespace)
            spent += time.perf_counter() - began
            if None in details:
                raise SystemExit(f"a corpus trace was refused (batch at {start})")
    finally:
        await storage.close()
    return spent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server_populate")
    parser.add_argument("--db", required=True, help="SQLite path or postgresql:// URL")
    parser.add_argument("--traces", type=int, required=True)
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args(argv)
    logs.configure("info", "json")  # stderr; stdout carries the one result line
    spent = asyncio.run(populate(args.db, args.traces, args.namespace))
    print(json.dumps({"upsert_s": spent}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
