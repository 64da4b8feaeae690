"""What we know about a trace is what the real Traces CLI sends for it (issue 12).

The pinned CLI shares every fixture session it finds to a recording aiohttp server on
127.0.0.1 (docs/traces-cli-0.6.31.md (f)); each trace PUT's `projectPath`, `model` and
`sourceCreatedAt` must equal the directory, model and created_at of the Trace we capture
from the same files. Without the binary this skips (fails under CI, see tests/tracescli.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import fixture_home
from tests.tracescli import require_traces_cli
from tracesd.capture.adapters import build_adapters
from tracesd.config import Config
from tracesd.models import Trace
from tracesd.store import rows
from tracesd.sync import message_ids

pytestmark = pytest.mark.traces_cli

#: where we knowingly differ from the CLI, per (trace id, field), and why
DIFFERENCES = {
    # Cline's messages carry no times: the CLI falls back to the file's mtime (classic) or
    # the messages file's `updated_at` (SDK), which move on every write; ours is the task's
    # real start (its id, or `started_at`).
    ("1795168200000", "created_at"),
    ("1795168500000_k3v9q", "created_at"),
    # The CLI reads this session from Cursor's global store, which names no folder; ours
    # comes from the workspace the composer belongs to.
    ("8e2f4a6c-1b3d-4e5f-a7b9-c0d1e2f3a4b5", "directory"),
}


def captured(config: Config) -> dict[str, Trace]:
    """The Trace ingest makes of each fixture session (adapters, then tracefields)."""
    known = frozenset({"/tmp/tracesd-demo/gemini-legacy", "/tmp/tracesd-demo/cursor-cli"})
    out: dict[str, Trace] = {}
    for adapter in build_adapters(config):
        for root in adapter.roots():
            for folder, _, names in os.walk(root):
                for name in names:
                    path = os.path.join(folder, name)
                    if adapter.matches(os.path.relpath(path, root)):
                        for meta in adapter.parse(path, known).traces:
                            out.setdefault(meta.trace_id, rows.new_trace(meta, None))
    return out


@dataclass(frozen=True)
class Shared:
    """Every fixture session the CLI lists, shared by it to a recording server."""

    home: Path
    listed: list[str]
    #: per trace id: the body of its PUT, and the messages of its batch uploads
    puts: dict[str, dict[str, Any]]
    messages: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    binary = require_traces_cli()
    home = fixture_home(tmp_path_factory.mktemp("fields") / "home")
    return asyncio.run(_share_every_session(binary, home))


async def _share_every_session(binary: Path, home: Path) -> Shared:
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
        for trace_id in listed:
            await cli("share", "--trace-id", trace_id, "--key", "trk_x")
    finally:
        await runner.cleanup()
    return Shared(home, listed, puts, messages)


def test_our_traces_say_what_the_real_cli_sends_for_each_session(
    shared: Shared, make_config: Callable[..., Config]
) -> None:
    """directory/model/created_at == the CLI's projectPath/model/sourceCreatedAt, for every
    fixture session the CLI shares (DIFFERENCES lists the known ones, with reasons)."""
    ours = captured(make_config(environ={"HOME": str(shared.home)}))
    listed, puts = shared.listed, shared.puts

    assert set(listed) <= set(ours), "the CLI lists a session we do not capture"
    assert set(listed) <= set(puts)
    mismatches = []
    for trace_id in listed:
        sent, trace = puts[trace_id], ours[trace_id]
        for field, theirs in (
            ("directory", sent.get("projectPath")),
            ("model", sent.get("model")),
            ("created_at", sent.get("sourceCreatedAt")),
        ):
            if (trace_id, field) not in DIFFERENCES and getattr(trace, field) != theirs:
                mismatches.append((trace.agent_id, trace_id, field, getattr(trace, field), theirs))
        if trace.directory is not None and (trace_id, "directory") not in DIFFERENCES:
            assert sent.get("projectName") == os.path.basename(trace.directory)
    assert mismatches == []
    assert len(listed) >= 10  # every agent the CLI reads is in there


def test_message_and_part_ids_are_made_from_the_source_keys_as_the_cli_makes_them(
    shared: Shared,
) -> None:
    """Every message and part the CLI uploads for the fixture sessions (every agent it reads;
    trace ids that are UUIDs and ids that are not, like Amp's `T-...`) has the id
    tracesd.sync.message_ids makes from the trace id and the source keys."""
    uploaded = {i: m for i, m in shared.messages.items() if m}
    assert any(not _is_uuid(i) for i in uploaded), "no trace id outside the UUID form"
    assert len(uploaded) >= 10
    wrong = []
    for trace_id, messages in uploaded.items():
        for message in messages:
            mine = message_ids.message_id(trace_id, message["sourceKey"])
            if mine != message["externalId"]:
                wrong.append((trace_id, message["sourceKey"], mine, message["externalId"]))
            for part in message["parts"]:
                theirs = part["externalId"]
                made = message_ids.part_id(trace_id, message["externalId"], part["sourceKey"])
                if made != theirs:
                    wrong.append((trace_id, part["sourceKey"], made, theirs))
    assert wrong == []


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
