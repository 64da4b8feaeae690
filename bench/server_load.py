"""The server_engines benchmark's clients, in a process of their own (so the benchmark's
bookkeeping takes no CPU from the server it measures): real aiohttp clients against real
`tracesd server` processes. One JSON line per event on stdout; the last is the result.

`python -m bench.server_load latency --url U --token T --traces N --requests K`: one client,
one keep-alive connection, K rounds of three GETs in a shuffled order: the first page of
`GET /v1/traces?gitRemoteUrl=` for a random repository in a random URL form (the page
checked against the corpus: bench.server_corpus), `GET /v1/session` and a
`GET /v1/traces/<unknown>` (404), the floor: HTTP, auth and routing without the listing.
Each time is from sending the request to having read the whole body.

`python -m bench.server_load batch --url U [--url U2] --token T --clients C --warmup W
--window S`: C clients (one connection each, client k on URL k mod the URLs) each sending
`POST /v1/traces/batch` of --size new traces in a loop. Lines `window.started` and
`window.ended` mark the measured window (W seconds after the start, S long); a batch counts
when its answer arrived inside it, every item 200. After the window, a sample of the
acknowledged traces is read back, each from another server than the one that took it
when there are two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench.server_corpus import PAGE, REPOS, canonical_url, first_page, new_item, url_form

#: acknowledged traces read back after the window, at most
SAMPLE = 200


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- latency


async def latency(url: str, token: str, traces: int, requests: int, seed: int) -> None:
    rng = random.Random(seed)
    times: dict[str, list[float]] = {"list": [], "session": [], "unknown": []}
    wrong: list[str] = []
    checked = 0
    connector = aiohttp.TCPConnector(limit=1)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:
        for round_ in range(requests + 10):  # the first 10 rounds warm up, not counted
            kinds = list(times)
            rng.shuffle(kinds)
            for kind in kinds:
                repo = rng.randrange(REPOS)
                if kind == "list":
                    path = "/v1/traces"
                    params = {"gitRemoteUrl": url_form(repo, rng.randrange(4))}
                elif kind == "session":
                    path, params = "/v1/session", {}
                else:
                    path, params = f"/v1/traces/unknown-{uuid.uuid4()}", {}
                started = time.perf_counter()
                async with session.get(path, params=params) as response:
                    body = await response.read()
                elapsed_ms = (time.perf_counter() - started) * 1000
                problem = _check(kind, response.status, body, repo, traces)
                checked += 1
                if problem:
                    wrong.append(problem)
                if round_ >= 10:
                    times[kind].append(elapsed_ms)
    emit("result", ms=times, checked=checked, wrong=len(wrong), wrong_examples=wrong[:5])


def _check(kind: str, status: int, body: bytes, repo: int, traces: int) -> str:
    """What is wrong with an answer ("" when it is right)."""
    want = 404 if kind == "unknown" else 200
    if status != want:
        return f"{kind}: HTTP {status}, want {want}"
    if kind != "list":
        return ""
    page = json.loads(body)["data"]["traces"]
    got = {t["externalId"] for t in page}
    expected = first_page(repo, traces)
    if got != expected or {t["gitRemoteUrl"] for t in page} != {canonical_url(repo)}:
        return (
            f"list repo {repo}: {len(got)} traces, {len(got & expected)} of the "
            f"{len(expected)} expected"
        )
    return ""


# ----------------------------------------------------------------------------- batch


class Window:
    """The measured stretch of the run, and what was acknowledged inside it."""

    def __init__(self, warmup_s: float, window_s: float) -> None:
        self.start = time.monotonic() + warmup_s
        self.end = self.start + window_s
        self.traces = 0
        self.batches = 0
        self.failed = 0
        self.batch_ms: list[float] = []
        #: (server index, externalId) of acknowledged traces
        self.acked: list[tuple[int, str]] = []

    def inside(self, at: float) -> bool:
        return self.start <= at <= self.end


async def client(
    index: int, urls: Sequence[str], token: str, size: int, window: Window, total: int
) -> None:
    server = index % len(urls)
    name = f"{uuid.uuid4().hex[:8]}-{index}"
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=1)
    n = 0
    async with aiohttp.ClientSession(urls[server], connector=connector, headers=headers) as s:
        while time.monotonic() < window.end:
            # spread over the corpus's repositories, like a team's clients
            batch = [new_item(name, (n + k) * total + index) for k in range(size)]
            n += size
            body = json.dumps({"traces": batch}).encode()
            started = time.monotonic()
            async with s.post(
                "/v1/traces/batch", data=body, headers={"Content-Type": "application/json"}
            ) as response:
                answer = await response.read()
            done = time.monotonic()
            ok = response.status == 200 and all(
                r["status"] == 200 for r in json.loads(answer)["data"]["results"]
            )
            if not window.inside(done):
                continue
            if not ok:
                window.failed += 1
                continue
            window.batches += 1
            window.traces += len(batch)
            window.batch_ms.append((done - started) * 1000)
            window.acked.append((server, batch[window.batches % size]["externalId"]))


async def marks(window: Window) -> dict[str, float]:
    """Print the window's start and end when they come; the CPU used between them."""
    await asyncio.sleep(max(0.0, window.start - time.monotonic()))
    before = cpu_s()
    emit("window.started")
    await asyncio.sleep(max(0.0, window.end - time.monotonic()))
    emit("window.ended")
    return {"cpu_s": cpu_s() - before, "wall_s": window.end - window.start}


async def batch(
    urls: Sequence[str], token: str, clients: int, size: int, warmup_s: float, window_s: float
) -> None:
    window = Window(warmup_s, window_s)
    timer = asyncio.create_task(marks(window))
    await asyncio.gather(*(client(i, urls, token, size, window, clients) for i in range(clients)))
    measured = await timer
    sample = random.Random(0).sample(window.acked, min(SAMPLE, len(window.acked)))
    missing = await _read_back(urls, token, sample)
    emit(
        "result",
        traces=window.traces,
        batches=window.batches,
        failed_batches=window.failed,
        batch_ms=window.batch_ms,
        sampled=len(sample),
        missing=missing,
        **measured,
    )


async def _read_back(urls: Sequence[str], token: str, sample: list[tuple[int, str]]) -> int:
    """How many of the sampled traces are not there, each asked of the next server."""
    missing = 0
    headers = {"Authorization": f"Bearer {token}"}
    sessions = [aiohttp.ClientSession(url, headers=headers) for url in urls]
    try:
        for server, external_id in sample:
            other = sessions[(server + 1) % len(urls)]
            async with other.get(f"/v1/traces/{external_id}") as response:
                await response.read()
                missing += response.status != 200
    finally:
        for session in sessions:
            await session.close()
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server_load")
    sub = parser.add_subparsers(dest="mode", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--url", required=True)
    lat.add_argument("--traces", type=int, required=True, help="the corpus's size")
    lat.add_argument("--requests", type=int, required=True, help="rounds of three GETs")
    lat.add_argument("--seed", type=int, default=1)
    put = sub.add_parser("batch")
    put.add_argument("--url", action="append", required=True, help="again for a second server")
    put.add_argument("--clients", type=int, default=16)
    put.add_argument("--size", type=int, default=PAGE, help="traces per batch")
    put.add_argument("--warmup", type=float, required=True, help="seconds before the window")
    put.add_argument("--window", type=float, required=True, help="seconds measured")
    for mode in (lat, put):
        mode.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    if args.mode == "latency":
        asyncio.run(latency(args.url, args.token, args.traces, args.requests, args.seed))
    else:
        asyncio.run(batch(args.url, args.token, args.clients, args.size, args.warmup, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
