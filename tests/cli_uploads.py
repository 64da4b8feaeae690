"""The real Traces CLI sharing sessions to a recording aiohttp server on 127.0.0.1: what it
uploads for each (docs/traces-cli-0.6.31.md (f)). Used to check tracesd against it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Shared:
    """Every fixture session the CLI lists, shared by it to a recording server."""

    home: Path
    listed: list[str]
    #: per trace id: the body of its PUT, and the messages of its batch uploads
    puts: dict[str, dict[str, Any]]
    messages: dict[str, list[dict[str, Any]]]


def assert_same_messages(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """tracesd's messages are the ones the CLI uploaded, message for message (the first that
    differs named), and as many."""
    for n, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        assert a == b, f"message {n} differs"
    assert len(mine) == len(theirs)


async def share_every_session(binary: Path, home: Path, only: list[str] | None = None) -> Shared:
    """Share every session the CLI lists under `home` (or the ids in `only`)."""
    puts: dict[str, dict[str, Any]] = {}
    messages: dict[str, list[dict[str, Any]]] = {}

    async def record(request: web.Request) -> web.Response:
        parts = request.path.strip("/").split("/")
        if request.method == "PUT" and len(parts) == 3 and parts[:2] == ["v1", "traces"]:
            puts[parts[2]] = await request.json()
            return web.json_response({"ok": True, "data": {"trace": {"id": "x"}}})
        if (
            request.method == "POST"
            and parts[:2] == ["v1", "traces"]
            and parts[3:]
            == [
                "messages",
                "batch",
            ]
        ):
            body = await request.json()
            assert body["idScheme"] == "v2"
            messages.setdefault(parts[2], []).extend(body["messages"])
        return web.json_response({"ok": True, "data": {}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "TERM": "dumb",
        "TRACES_HTTP_URL": url,
        "TRACES_API_URL": url,
        "TRACES_URL": url,
    }

    async def cli(*args: str) -> Any:
        proc = await asyncio.create_subprocess_exec(
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            str(binary),
            *args,
            "--json",
            cwd=home,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, (args, out, err)
        return json.loads(out)

    try:
        listed = [t["id"] for t in (await cli("list"))["data"]["traces"]]
        for trace_id in only if only is not None else listed:
            await cli("share", "--trace-id", trace_id, "--key", "trk_x")
    finally:
        await runner.cleanup()
    return Shared(home, listed, puts, messages)
