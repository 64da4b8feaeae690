"""The unmodified real Traces CLI 0.6.31 against a real `tracesd server` (issue 12).

One server for the module, with three tokens (an API key, a user token, a second API key),
each its own user and namespace (INTERFACE 7). The CLI is pointed at it with
TRACES_HTTP_URL, TRACES_API_URL and TRACES_URL (INTERFACE 8) and runs in a temp HOME
holding the fixture Claude session (with its subagent) under an id of the test's own, so
the tests never see each other's traces. What the CLI sends is known exactly: the same
share, run first against the recorder (tests/cliserver.py, the floor of
docs/traces-cli-0.6.31.md (f)), records its requests; the server must then hold those
fields and every message part. The data is checked through the API, with the token.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clihome import TracesCli, claude_continue, wait_for
from tests.cliserver import SESSION_CWD, TracesdServer, WireRecorder, claude_home
from tests.tracescli import require_traces_cli

pytestmark = pytest.mark.traces_cli

KEY = "trk_alice_compat_key"
USER_TOKEN = "bob-compat-session-token"  # not trk_: a user token, GET /v1/session first
OTHER_KEY = "trk_carol_compat_key"

#: what the CLI sent for one trace: its PUT body, and the messages of its batches
Sent = tuple[dict[str, Any], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def binary() -> Path:
    return require_traces_cli()


@pytest.fixture(scope="module")
def server(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracesdServer]:
    started = TracesdServer(tmp_path_factory.mktemp("server"), [KEY, USER_TOKEN, OTHER_KEY])
    yield started
    started.kill()


@pytest.fixture(scope="module")
def recorder(binary: Path) -> Iterator[WireRecorder]:
    started = WireRecorder()
    yield started
    started.close()


def new_home(binary: Path, home: Path, api: str, session_id: str | None = None) -> TracesCli:
    """The CLI in a fresh HOME (with the fixture session as `session_id`, if given)."""
    if session_id is None:
        home.mkdir()
    else:
        claude_home(home, session_id)
    return TracesCli(binary, home, api=api)


def cli_ok(cli: TracesCli, *args: str) -> dict[str, Any]:
    """`traces <args> --json`, which must exit 0 with ok: its `data`."""
    done = cli.run(*args, "--json")
    assert done.returncode == 0, (
        f"traces {' '.join(args)} -> {done.returncode}:\n{done.stdout}{done.stderr}"
    )
    answer = json.loads(done.stdout)
    assert answer.get("ok") is True, answer
    data: dict[str, Any] = answer["data"]
    return data


def share(cli: TracesCli, session_id: str, token: str) -> dict[str, Any]:
    return cli_ok(cli, "share", "--trace-id", session_id, "--key", token)


def what_the_cli_sends(
    binary: Path, recorder: WireRecorder, home: Path, session_id: str, token: str
) -> dict[str, Sent]:
    """The same first share against the recorder: per trace id, what the CLI sent."""
    first = len(recorder.requests)
    share(new_home(binary, home, recorder.base, session_id), session_id, token)
    sent: dict[str, Sent] = {}
    for request in recorder.requests[first:]:
        path = request.path.split("/")
        if request.method == "PUT" and len(path) == 4:
            sent[path[3]] = (request.body, [])
        elif request.method == "POST" and path[4:] == ["messages", "batch"]:
            sent[path[3]][1].extend(request.body["messages"])
    return sent


def flat_parts(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Every part, in message order: (message externalId, part externalId, type, content).
    The same whether the server keeps a message sent twice in one batch as two entries or
    merges its parts into one."""
    ordered = sorted(messages, key=lambda m: m["order"])
    return [
        (m["externalId"], p.get("externalId"), p["type"], p["content"])
        for m in ordered
        for p in m.get("parts") or []
    ]


def assert_stored(server: TracesdServer, token: str, trace_id: str, sent: Sent) -> None:
    """The server holds the trace with the fields the CLI sent and all its messages."""
    fields, messages = sent
    detail = server.trace(trace_id, token)
    for name, value in fields.items():
        if name != "targetNamespaceId":  # the caller's namespace (checked on its own)
            assert detail.get(name) == value, (trace_id, name, detail.get(name), value)
    stored = server.messages(trace_id, token)
    assert flat_parts(stored) == flat_parts(messages), trace_id
    by_id: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_id.setdefault(message["externalId"], []).append(message)
    for message in stored:
        [*entries] = by_id[message["externalId"]]
        assert message["role"] in {e["role"] for e in entries}
        if len(entries) == 1:
            for name, value in entries[0].items():
                if name != "parts":
                    assert message.get(name) == value, (trace_id, name, message.get(name), value)


def test_share_with_an_api_key_stores_the_trace_its_subagent_and_every_message_part(
    binary: Path, server: TracesdServer, recorder: WireRecorder, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    sent = what_the_cli_sends(binary, recorder, tmp_path / "wire", session, KEY)
    [subagent] = sent.keys() - {session}
    cli = new_home(binary, tmp_path / "home", server.base, session)

    answer = share(cli, session, KEY)

    detail = server.trace(session, KEY)
    assert detail["id"]
    assert answer["sharedUrl"] == f"{server.base}/s/{detail['id']}"
    for trace_id in (session, subagent):
        assert_stored(server, KEY, trace_id, sent[trace_id])
    child = server.trace(subagent, KEY)
    assert (child["relatedTo"], child["relationshipType"]) == (session, "subagent")
    # one Claude API message split per content block: sent twice, tool call then text
    twice = [m for m in sent[session][1] if m["externalId"] == sent[session][1][1]["externalId"]]
    assert [p["type"] for m in twice for p in m["parts"]] == ["tool_call", "text"]
    kept = [p for m in server.messages(session, KEY) for p in m["parts"]]
    assert {p["externalId"] for m in twice for p in m["parts"]} <= {p["externalId"] for p in kept}


def test_share_with_a_user_token_asks_for_its_session_and_lands_in_its_namespace(
    binary: Path, server: TracesdServer, recorder: WireRecorder, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    sent = what_the_cli_sends(binary, recorder, tmp_path / "wire", session, USER_TOKEN)
    assert all(
        fields["targetNamespaceId"] == recorder.NAMESPACE["id"] for fields, _ in sent.values()
    )
    cli = new_home(binary, tmp_path / "home", server.base, session)

    answer = share(cli, session, USER_TOKEN)

    active = server.get("/v1/session", USER_TOKEN)["activeNamespace"]
    assert answer["namespaceSlug"] == active["slug"]  # the CLI read GET /v1/session
    for trace_id, one in sent.items():
        assert_stored(server, USER_TOKEN, trace_id, one)
        assert server.trace(trace_id, USER_TOKEN)["namespace"]["id"] == active["id"]
    assert answer["sharedUrl"] == f"{server.base}/s/{server.trace(session, USER_TOKEN)['id']}"


def test_a_token_neither_sees_nor_changes_the_trace_another_token_shared(
    binary: Path, server: TracesdServer, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    share(new_home(binary, tmp_path / "alice", server.base, session), session, KEY)
    before = server.trace(session, KEY)
    before_messages = server.messages(session, KEY)

    for token in (OTHER_KEY, USER_TOKEN):
        for path in (f"/v1/traces/{session}", f"/v1/traces/{session}/messages"):
            assert server.call("GET", path, token).status == 404, (token, path)
        listed = server.get("/v1/traces?limit=100", token)["traces"]
        assert session not in {t.get("externalId") for t in listed}
    pulled = new_home(binary, tmp_path / "carol-pull", server.base).run(
        "sync", session, "--json", "--key", OTHER_KEY
    )
    assert pulled.returncode == 1, pulled
    assert "TRACE_NOT_FOUND" in pulled.stderr

    # the other token shares a session with the same id, retitled: whatever the server
    # answers it, the first token's trace is as it was
    carol = new_home(binary, tmp_path / "carol", server.base, session)
    transcript = next((carol.home / ".claude" / "projects").glob(f"*/{session}.jsonl"))
    transcript.write_text(transcript.read_text().replace("Dry-run flag", "Carol's title"))
    carol.run("share", "--trace-id", session, "--json", "--key", OTHER_KEY)
    after = server.trace(session, KEY)
    assert (after["title"], after["id"]) == (before["title"], before["id"])
    assert server.messages(session, KEY) == before_messages


def test_refresh_after_the_session_grows_appends_the_new_messages_on_the_server(
    binary: Path, server: TracesdServer, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    cli = new_home(binary, tmp_path / "home", server.base, session)
    share(cli, session, KEY)
    before = flat_parts(server.messages(session, KEY))

    claude_continue(cli.home, SESSION_CWD, session, "Now document the dry-run flag")
    answer = cli_ok(cli, "refresh", "--trace-id", session, "--key", KEY)

    assert answer["appended"] == 2, answer
    after = flat_parts(server.messages(session, KEY))
    assert after[: len(before)] == before
    assert len(after) == len(before) + 2
    assert {"text": "Now document the dry-run flag"} in [content for *_, content in after]


def test_sync_pulls_a_shared_trace_and_its_messages_into_an_empty_home(
    binary: Path, server: TracesdServer, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    sharer = new_home(binary, tmp_path / "sharer", server.base, session)
    share(sharer, session, KEY)
    puller = new_home(binary, tmp_path / "puller", server.base)

    cli_ok(puller, "sync", session, "--key", KEY)

    shown, original = cli_ok(puller, "show", session), cli_ok(sharer, "show", session)
    assert shown["trace"]["title"] == original["trace"]["title"]
    assert shown["trace"]["localMessageCount"] == original["trace"]["localMessageCount"]
    assert events(shown) == events(original)


def test_share_follow_puts_each_new_message_on_the_server_as_the_session_grows(
    binary: Path, server: TracesdServer, tmp_path: Path
) -> None:
    session = str(uuid.uuid4())
    cli = new_home(binary, tmp_path / "home", server.base, session)
    follower = cli.start("share", "--trace-id", session, "--follow", "--json", "--key", KEY)

    def parts(at_least: int) -> list[tuple[Any, ...]] | None:
        """The server's parts of the trace once it holds `at_least` of them."""
        if follower.poll() is not None:
            out, err = follower.communicate()
            raise AssertionError(f"share --follow exited {follower.returncode}:\n{out}{err}")
        answer = server.call("GET", f"/v1/traces/{session}/messages?includeParts=true", KEY)
        found = flat_parts(answer.body["data"]["messages"]) if answer.status == 200 else []
        return found if len(found) >= at_least else None

    try:
        shared = wait_for("the share uploaded the session", lambda: parts(1))
        claude_continue(cli.home, SESSION_CWD, session, "Follow this prompt")
        grown = wait_for("the follower put the new messages", lambda: parts(len(shared) + 2))
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, err
    assert json.loads(out)["data"]["traceId"] == session
    assert grown[: len(shared)] == shared
    assert len(grown) == len(shared) + 2
    assert {"text": "Follow this prompt"} in [content for *_, content in grown]


def events(shown: dict[str, Any]) -> list[dict[str, Any]]:
    """`traces show --json`'s events, without what differs between a parsed session and
    a pulled one: the local event id and order numbering, and the ids (the session's own
    message ids when parsed, the ids the CLI uploaded when pulled)."""
    local = ("id", "order", "messageExternalId", "partExternalId")
    return [{k: v for k, v in e.items() if k not in local} for e in shown["events"]]
