"""What we know about a trace is what the real Traces CLI sends for it (issue 12).

The pinned CLI shares every fixture session it finds to a recording aiohttp server on
127.0.0.1 (docs/traces-cli-0.6.31.md (f)); each trace PUT's `projectPath`, `model` and
`sourceCreatedAt` must equal the directory, model and created_at of the Trace we capture
from the same files. Without the binary this skips (fails under CI, see tests/tracescli.py).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable

import pytest

from tests.cli_uploads import Shared, share_every_session
from tests.helpers import fixture_home
from tests.tracescli import require_traces_cli
from tracesd.capture.adapters import AGENT_IDS, build_adapters
from tracesd.config import Config
from tracesd.messages import ids, transcript
from tracesd.models import Trace
from tracesd.store import rows

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


#: agents the CLI 0.6.31 lists no session of (it keeps `gemini-cli` only among its legacy
#: agent ids), so there is nothing of its own to compare: tracesd's Gemini CLI reader follows
#: the CLI 0.5.9's mapping with 0.6.31's keys (tests/test_messages_gemini_cli.py)
NOT_READ_BY_THE_CLI = frozenset({"gemini-cli"})


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


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    binary = require_traces_cli()
    home = fixture_home(tmp_path_factory.mktemp("fields") / "home")
    return asyncio.run(share_every_session(binary, home))


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
    tracesd.messages.ids makes from the trace id and the source keys."""
    uploaded = {i: m for i, m in shared.messages.items() if m}
    assert any(not _is_uuid(i) for i in uploaded), "no trace id outside the UUID form"
    assert len(uploaded) >= 10
    wrong = []
    for trace_id, messages in uploaded.items():
        for message in messages:
            mine = ids.message_id(trace_id, message["sourceKey"])
            if mine != message["externalId"]:
                wrong.append((trace_id, message["sourceKey"], mine, message["externalId"]))
            for part in message["parts"]:
                theirs = part["externalId"]
                made = ids.part_id(trace_id, message["externalId"], part["sourceKey"])
                if made != theirs:
                    wrong.append((trace_id, part["sourceKey"], made, theirs))
    assert wrong == []


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("agent_id", AGENT_IDS)
def test_we_read_each_session_into_the_messages_the_cli_uploads_for_it(
    shared: Shared, make_config: Callable[..., Config], agent_id: str
) -> None:
    """Every message the CLI uploads for a fixture session, field for field and in order
    (ids, source keys, text, parts, token usage), is what tracesd reads from the same file:
    so whichever of the two uploads a session first, the other adds nothing."""
    ours = captured(make_config(environ={"HOME": str(shared.home)}))
    traces = [ours[i] for i in shared.listed if ours[i].agent_id == agent_id]
    if agent_id in NOT_READ_BY_THE_CLI:
        assert traces == [], f"the CLI now reads {agent_id}: compare its messages"
        return
    assert traces, f"the CLI shares no {agent_id} fixture session"
    for trace in traces:
        theirs = shared.messages.get(trace.id, [])
        mine = transcript.messages(trace)
        for n, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            assert a == b, f"{trace.id}: message {n} differs"
        assert len(mine) == len(theirs), trace.id
