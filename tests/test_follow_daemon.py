"""Message follow end to end (issue 14): a real `tracesd run`, real session files growing,
and a real HTTP server on 127.0.0.1 that stores message batches and can be told to fail.

What reaches the server is compared with what the whole session reads into
(tracesd.messages.transcript, itself checked against the real CLI in
tests/test_traces_cli_fields.py): the same ids, the same entries, nothing else.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faultserver import Plan, ThreadedFaultServer
from tests.helpers import (
    Daemon,
    claude_session,
    db_path,
    isolated_env,
    sync_config,
    tracesd,
    wait_for,
)
from tracesd.messages import transcript
from tracesd.models import Trace

StartDaemon = Callable[..., Daemon]


def follow_config(home: Path, url: str, extra: str = "") -> dict[str, str]:
    return sync_config(home, url, extra=extra, key="trk_follow_KEY_0123456789abcdef0123456789")


class Session:
    """A Claude Code session that grows a line at a time, as the agent writes it."""

    def __init__(self, home: Path, cwd: Path, prompt: str = "Follow me") -> None:
        self.id, self.path = claude_session(home, cwd, prompt)
        self.cwd = cwd
        self.lines = 1

    def say(self, text: str) -> None:
        self.append(
            {
                "type": "assistant",
                "uuid": f"a-{self.id[:8]}-{self.lines}",
                "sessionId": self.id,
                "cwd": str(self.cwd),
                "timestamp": f"2026-11-28T10:{self.lines // 60:02d}:{self.lines % 60:02d}.000Z",
                "message": {
                    "id": f"msg_{self.lines}",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [{"type": "text", "text": text}],
                    "usage": {"input_tokens": 3, "output_tokens": 5},
                },
            }
        )

    def ask(self, text: str) -> None:
        self.append(
            {
                "type": "user",
                "uuid": f"u-{self.id[:8]}-{self.lines}",
                "sessionId": self.id,
                "cwd": str(self.cwd),
                "timestamp": f"2026-11-28T11:{self.lines // 60:02d}:{self.lines % 60:02d}.000Z",
                "message": {"role": "user", "content": text},
            }
        )

    def append(self, line: dict[str, Any]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")
        self.lines += 1

    def expected(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every entry the whole session reads into, by (message id, part id)."""
        trace = Trace(id=self.id, agent_id="claude-code", source_path=str(self.path))
        return {
            (m["externalId"], m["parts"][0]["externalId"]): m for m in transcript.messages(trace)
        }


def on_server(fault: ThreadedFaultServer, trace_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    held: dict[tuple[str, str], dict[str, Any]] = fault.call(
        lambda: dict(fault.server.messages.get(trace_id, {}))
    )
    return held


def status(home: Path) -> dict[str, Any]:
    out = tracesd(home, "status", "--json", env=isolated_env(home))
    assert out.returncode == 0, out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def started(daemons: StartDaemon, home: Path, env: dict[str, str]) -> Daemon:
    (home / ".claude" / "projects").mkdir(parents=True, exist_ok=True)
    daemon = daemons(home, env=env)
    daemon.wait_ready()
    return daemon


def test_messages_follow_a_growing_session_to_the_server(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """Each line the agent appends reaches the server as the entries the whole session
    reads into, with the same ids; status and `list` show the trace followed."""
    daemon = started(daemons, home, follow_config(home, fault.url))
    session = Session(home, tmp_path)
    wait_for(lambda: on_server(fault, session.id) == session.expected())
    for n in range(3):
        session.say(f"Step {n} done.")
        session.ask(f"Now step {n + 1}")
        wait_for(lambda: on_server(fault, session.id) == session.expected())
    assert len(on_server(fault, session.id)) == 7

    follow = status(home)["sync"]["messages"]
    assert follow["enabled"] is True
    assert (follow["followed"], follow["pending"], follow["refused"]) == (1, 0, 0)
    assert follow["sent_total"] == 7
    listed = json.loads(tracesd(home, "list", "--json", env=isolated_env(home)).stdout)
    [trace] = listed["traces"]
    assert (trace["followed"], trace["messages"]) == (True, {"pending": 0, "sent": 7})
    assert daemon.stop() == 0


def test_each_message_is_read_once_and_sent_once_when_nothing_fails(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """No entry is uploaded twice, and a session is read from where the last read ended:
    the bytes read for the messages are the bytes appended."""
    daemon = started(daemons, home, follow_config(home, fault.url))
    session = Session(home, tmp_path)
    wait_for(lambda: on_server(fault, session.id) == session.expected())
    for n in range(3):
        session.say("x" * 2000 + str(n))
        wait_for(lambda: on_server(fault, session.id) == session.expected())
    sent = fault.call(
        lambda: [e["parts"][0]["externalId"] for _, e in fault.server.message_entries]
    )
    assert len(sent) == len(set(sent)) == 4
    [row] = sqlite3.connect(db_path(home)).execute(
        "SELECT offset FROM tracesd_message_follow WHERE trace_id = ?", (session.id,)
    )
    assert row[0] == session.path.stat().st_size
    assert daemon.stop() == 0


def test_kill_9_at_any_moment_leaves_no_gap_and_no_duplicate(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """The session grows while the daemon is killed (-9) again and again, some of the
    times with answers in flight: in the end the server holds exactly the entries of the
    whole session, each under its one id."""
    env = follow_config(home, fault.url)
    session = Session(home, tmp_path)
    rng = random.Random(14)
    for round_ in range(4):
        daemon = started(daemons, home, env)
        for n in range(5):
            session.say(f"round {round_} line {n}")
            time.sleep(rng.uniform(0, 0.3))
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(5)
    daemon = started(daemons, home, env)
    wait_for(lambda: on_server(fault, session.id) == session.expected(), timeout=30)
    assert len(session.expected()) == 21
    assert status(home)["sync"]["messages"]["pending"] == 0
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("refusal", "plan"),
    [
        ("422", {"poison_text": "POISON"}),
        ("413", {"max_message_bytes": 3000}),
    ],
)
def test_a_refused_message_is_isolated_counted_and_the_rest_flows(
    daemons: StartDaemon,
    home: Path,
    tmp_path: Path,
    fault: ThreadedFaultServer,
    refusal: str,
    plan: dict[str, Any],
) -> None:
    """A server that refuses one message (422, or 413 for its size) gets every other one;
    the refused one is counted in status, kept, and not sent again until it changes."""
    for name, value in plan.items():
        fault.call(lambda n=name, v=value: setattr(fault.server.plan, n, v))
    daemon = started(daemons, home, follow_config(home, fault.url))
    session = Session(home, tmp_path)
    session.say("fine before")
    session.say("POISON here " + "y" * 4000)
    session.say("fine after")
    expected = {
        k: v for k, v in session.expected().items() if "POISON" not in (v.get("textContent") or "")
    }
    wait_for(lambda: on_server(fault, session.id) == expected)
    wait_for(lambda: status(home)["sync"]["messages"]["refused"] == 1)
    refused = daemon.wait_for_event("follow.messages_refused")
    assert refusal in refused["error"]
    assert status(home)["sync"]["messages"]["pending"] == 0
    session.say("and more")
    wait_for(lambda: len(on_server(fault, session.id)) == len(expected) + 1)
    assert daemon.stop() == 0


def test_a_message_past_the_size_limit_is_sent_with_its_content_replaced_and_counted(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """As the CLI does: an entry over 512 KiB of JSON goes with `[Message too Large to
    Upload]` for its content (the same ids), and status counts it."""
    daemon = started(daemons, home, follow_config(home, fault.url))
    session = Session(home, tmp_path)
    session.say("z" * 600_000)
    session.say("small")
    wait_for(lambda: on_server(fault, session.id) == session.expected())
    texts = [m.get("textContent") for m in on_server(fault, session.id).values()]
    assert "[Message too Large to Upload]" in texts
    assert status(home)["sync"]["messages"]["oversized_total"] == 1
    assert daemon.stop() == 0


def test_an_outage_queues_messages_and_they_follow_once_it_ends(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    """While the server answers 503, messages wait in the queue (status counts them);
    once it is back, every one arrives, in the session's order."""
    daemon = started(daemons, home, follow_config(home, fault.url))
    session = Session(home, tmp_path)
    wait_for(lambda: on_server(fault, session.id) == session.expected())

    def outage(plan: Plan) -> None:
        plan.fail_until = time.monotonic() + 3600

    fault.call(outage, fault.server.plan)
    for n in range(3):
        session.say(f"during the outage {n}")
    wait_for(lambda: status(home)["sync"]["messages"]["pending"] == 3)
    fault.call(lambda: setattr(fault.server.plan, "fail_until", 0.0))
    wait_for(lambda: on_server(fault, session.id) == session.expected())
    assert status(home)["sync"]["messages"]["pending"] == 0
    assert daemon.stop() == 0


def test_send_titles_false_uploads_no_message(
    daemons: StartDaemon, home: Path, tmp_path: Path, fault: ThreadedFaultServer
) -> None:
    daemon = started(daemons, home, follow_config(home, fault.url, "send_titles = false\n"))
    session = Session(home, tmp_path)
    session.say("secret plans")
    wait_for(lambda: session.id in fault.call(lambda: dict(fault.server.stored)))
    daemon.wait_for_event("sync.batch")
    time.sleep(1.5)  # three sync intervals: a message would have been sent by now
    assert fault.call(lambda: list(fault.server.message_entries)) == []
    assert status(home)["sync"]["messages"]["enabled"] is False
    assert b"secret plans" not in b"".join(fault.call(lambda: list(fault.server.bodies)))
    assert daemon.stop() == 0
