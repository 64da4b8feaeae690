"""The real Traces CLI against a Traces API: a real `tracesd server`, and a recorder.

`TracesdServer` is a `tracesd server` subprocess on a free loopback port, with tokens, and
a small blocking client of its API for the checks (`get` answers the envelope's `data`).
`WireRecorder` is the floor of docs/traces-cli-0.6.31.md (f), "Answers the CLI needs": an
aiohttp server on 127.0.0.1 (in a thread) answering the minimal shapes and recording every
request, so a test knows exactly what the CLI sends. `claude_home` makes a HOME holding the
fixture Claude session (with its subagent) under a session id of the test's choosing: the
CLI's ids are derived from it, so each test has traces of its own on a shared server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web

from tests.helpers import FIXTURES, isolated_env

#: the fixture Claude session (with one subagent), its project folder and working directory
SESSION = "0f8b6d1e-4c2a-4e7b-9a51-3d2c1b0a9e87"
PROJECT = Path(".claude") / "projects" / "-tmp-tracesd-demo-claude-code"
SESSION_CWD = Path("/tmp/tracesd-demo/claude-code")
START_TIMEOUT_S = 30.0


def claude_home(home: Path, session_id: str) -> Path:
    """`home` with the fixture's Claude sessions, the one with a subagent renamed to
    `session_id` (its transcript, subagent folder and history lines)."""
    shutil.copytree(FIXTURES / "home" / ".claude", home / ".claude")
    project = home / PROJECT
    for path in [home / ".claude" / "history.jsonl", *project.glob(f"{SESSION}*/**/*.jsonl")]:
        path.write_text(path.read_text().replace(SESSION, session_id))
    transcript = project / f"{SESSION}.jsonl"
    transcript.write_text(transcript.read_text().replace(SESSION, session_id))
    transcript.rename(project / f"{session_id}.jsonl")
    (project / SESSION).rename(project / session_id)
    return home


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any


class TracesdServer:
    """`tracesd server --port 0` on its own SQLite file, accepting `tokens`."""

    def __init__(self, root: Path, tokens: list[str]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.db = root / "server.db"
        self.log_path = root / "server.log"
        env = isolated_env(root, TRACESD_SERVER_TOKENS=",".join(tokens))
        argv = [sys.executable, "-m", "tracesd", "server", "--log-format", "json"]
        argv += ["--port", "0", "--db", str(self.db)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.base = f"http://127.0.0.1:{self._port()}"

    def _port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "server.started":
                    return int(event["port"])
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"tracesd server did not start:\n{self.log_path.read_text()}")

    def call(self, method: str, path: str, token: str) -> Answer:
        request = urllib.request.Request(
            self.base + path, method=method, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return Answer(status, json.loads(raw) if raw else None)

    def get(self, path: str, token: str) -> Any:
        """The `data` of a 2xx enveloped answer (AssertionError otherwise)."""
        answer = self.call("GET", path, token)
        assert answer.status == 200, f"GET {path} -> {answer.status} {answer.body}"
        assert isinstance(answer.body, dict), answer.body
        assert answer.body.get("ok") is True, answer.body
        return answer.body["data"]

    def trace(self, trace_id: str, token: str) -> dict[str, Any]:
        detail: dict[str, Any] = self.get(f"/v1/traces/{trace_id}", token)["trace"]
        return detail

    def messages(self, trace_id: str, token: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get(
            f"/v1/traces/{trace_id}/messages?includeParts=true", token
        )["messages"]
        return found

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    authorization: str
    body: Any


class WireRecorder:
    """The do-nothing Traces API of docs (f) "Answers the CLI needs", recording requests."""

    NAMESPACE: ClassVar[dict[str, str]] = {"id": "ns-floor", "slug": "floor", "type": "individual"}

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        self.base = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return port

    async def _answer(self, request: web.Request) -> web.Response:
        raw = await request.read()
        auth = request.headers.get("Authorization", "")
        body = json.loads(raw) if raw else None
        self.requests.append(Request(request.method, request.path_qs, auth, body))
        parts = request.path.strip("/").split("/")
        data: dict[str, Any] = {}
        if request.path == "/v1/session":
            data = {"activeNamespace": self.NAMESPACE}
        elif request.method == "PUT" and len(parts) == 3:
            data = {"trace": {"id": f"floor-{parts[2]}"}}
        elif request.method == "GET" and parts[-1] == "messages":
            data = {"messages": []}
        return web.json_response({"ok": True, "data": data})

    def sent(self, method: str, path: str) -> list[Any]:
        """The bodies of the requests made with this method and path, in order."""
        return [r.body for r in self.requests if (r.method, r.path) == (method, path)]

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
