"""The floor for the real CLI's requests: a Traces API that does nothing.

`python -m bench.floorserver` serves on a free 127.0.0.1 port (printed as one JSON line,
`{"event": "floor.started", "port": N}`, on stdout) until SIGTERM. Every request's body is
read in full and dropped; the answer is the minimal shape the Traces CLI 0.6.31 needs
(docs/traces-cli-0.6.31.md (f), "Answers the CLI needs"): `GET /v1/session` an active
namespace, a trace PUT `{"trace": {"id"}}`, the messages list `[]`, anything else
`{"ok": true, "data": {}}`. `FloorServer` runs it as a subprocess, like `tracesd server`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.harness import Stops
from bench.measure import BenchError, stop_process

NAMESPACE = {"id": "ns-floor", "slug": "floor", "type": "individual", "displayName": "Floor"}
#: above the CLI's 8 MiB batch estimate (docs (f), "Chunking")
MAX_BODY = 64 << 20


async def answer(request: web.Request) -> web.Response:
    await request.read()
    parts = request.path.strip("/").split("/")
    data: dict[str, Any] = {}
    if request.path == "/v1/session":
        data = {"activeNamespace": NAMESPACE}
    elif request.method == "PUT" and len(parts) == 3:
        data = {"trace": {"id": f"floor-{parts[2]}"}}
    elif request.method == "GET" and parts[-1] == "messages":
        data = {"messages": []}
    return web.json_response({"ok": True, "data": data})


async def serve() -> None:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"event": "floor.started", "port": port}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


class FloorServer(Stops):
    """`python -m bench.floorserver` as a subprocess, ready once it printed its port."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, timeout_s: float = 30.0):
        argv = [sys.executable, "-m", "bench.floorserver"]
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log
            )
        try:
            self.port = self._wait_started(timeout_s, log_path)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace_s: float = 10.0) -> None:
        stop_process(self.proc, grace_s)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def _wait_started(self, timeout_s: float, log_path: Path) -> int:
        assert self.proc.stdout is not None
        killer = threading.Timer(timeout_s, self.proc.kill)  # a hang ends the readline
        killer.start()
        try:
            line = self.proc.stdout.readline()  # the first line, or b"" when it exited
        finally:
            killer.cancel()
        if not line:
            raise BenchError(f"the floor server did not start in {timeout_s:g}s: {log_path}")
        return int(json.loads(line)["port"])


if __name__ == "__main__":
    asyncio.run(serve())
