"""The reference server as the real Traces CLI 0.6.31 uses it (docs/traces-cli-0.6.31.md
(f)): the envelope on every route, users and namespaces per token, the CLI's trace
fields, messages and parts. A real aiohttp server on loopback, a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.pgserver import table_rows
from tests.test_server import OTHER_TOKEN, TOKEN, Answer, Api, message, trace
from tracesd.server.app import MAX_MESSAGE_BODY, make_app
from tracesd.server.auth import user_for
from tracesd.server.sqlite_store import SQLiteStorage
from tracesd.server.storage import Storage, open_storage

ME = user_for(TOKEN)
THEM = user_for(OTHER_TOKEN)
PARENT = "0f8b6d1e-4c2a-4e7b-9a51-3d2c1b0a9e87"
SUBAGENT = "5ef8a3ec-9d79-57db-bbb4-f4e043d5098d"

#: what `traces share` PUTs (docs (f) "Trace PUT body"), a subagent's relation included
CLI_TRACE: dict[str, Any] = {
    "agentId": "claude-code",
    "title": "Dry-run flag for sync command",
    "projectPath": "/tmp/tracesd-demo/claude-code",
    "projectName": "claude-code",
    "model": "claude-sonnet-4-5-20250929",
    "tokenUsage": {"inputTokenCount": 12, "outputTokenCount": 41, "cacheReadTokenCount": 0},
    "visibility": "direct",
    "gitRemoteUrl": "https://github.com/Org/Wire",
    "gitBranch": "feat/wire",
    "gitRef": "0123456789abcdef0123456789abcdef01234567",
    "relatedTo": PARENT,  # not on the server yet: the CLI PUTs the subagent first
    "relationshipType": "subagent",
    "sourceCreatedAt": 1795165800118,
}
USAGE = {
    "inputTokenCount": 12,
    "outputTokenCount": 41,
    "cacheReadTokenCount": 0,
    "cacheWriteTokenCount": 2048,
}
TOOL_CALL: dict[str, Any] = {
    "externalId": "ad235f93-0000-4000-8000-000000000001",
    "sourceKey": "tool_use:toolu_01SyntheticRead0001",
    "type": "tool_call",
    "content": {
        "callId": "toolu_01SyntheticRead0001",
        "toolName": "Read",
        "args": {"file_path": "/tmp/tracesd-demo/sync.py"},
    },
    "tokenUsage": USAGE,
}
TEXT = {
    "externalId": "30c5e58c-0000-4000-8000-000000000002",
    "sourceKey": "text:0",
    "type": "text",
    "content": {"text": "I'll look at the sync command first."},
}
SPLIT = "a21da334-0000-4000-8000-000000000003"
#: the CLI's first batch of a Claude session (docs (f) "Message batch body"): one API
#: message split in two entries with the same externalId, different orders and parts
CLI_BATCH: dict[str, Any] = {
    "idScheme": "v2",
    "messages": [
        {
            "externalId": "3d27d528-0000-4000-8000-000000000004",
            "sourceKey": "user:7c1e9a52",
            "role": "user",
            "textContent": "Add a --dry-run flag",
            "order": 1,
            "timestamp": 1795165800118,
            "parts": [
                {
                    "externalId": "98717130-0000-4000-8000-000000000005",
                    "sourceKey": "text:0",
                    "type": "text",
                    "content": {"text": "Add a --dry-run flag"},
                }
            ],
        },
        {
            "externalId": SPLIT,
            "sourceKey": "assistant:9d2f0b63",
            "role": "assistant",
            "order": 2,
            "timestamp": 1795165804502,
            "tokenUsage": USAGE,
            "parts": [TOOL_CALL],
        },
        {
            "externalId": SPLIT,
            "sourceKey": "assistant:9d2f0b63",
            "role": "assistant",
            "textContent": "I'll look at the sync command first.",
            "model": "claude-sonnet-4-5-20250929",
            "order": 3,
            "timestamp": 1795165804502,
            "parts": [TEXT],
        },
        {
            "externalId": "3be17f24-0000-4000-8000-000000000006",
            "role": "assistant",
            "order": 4,
            "parts": [
                {
                    "externalId": "3be17f24-0000-4000-8000-000000000007",
                    "sourceKey": "tool_result:toolu_01SyntheticRead0001",
                    "type": "tool_result",
                    "content": {
                        "callId": "toolu_01SyntheticRead0001",
                        "toolName": "Read",
                        "output": "def sync(src, dst):\n    ...",
                        "status": "success",
                    },
                }
            ],
        },
    ],
}


@pytest.fixture
async def db(db_target: str) -> AsyncIterator[Storage]:
    """The storage the server runs on: each test runs once on SQLite, once on PostgreSQL."""
    db = await open_storage(db_target)
    yield db
    await db.close()


@pytest.fixture
async def api(db: Storage) -> AsyncIterator[Api]:
    """A server with two tokens (two users) on 127.0.0.1."""
    runner = web.AppRunner(make_app(db, tokens=(TOKEN, OTHER_TOKEN)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://{host}:{port}")
    await runner.cleanup()


async def post_messages(api: Api, external_id: str, body: Any, **kw: Any) -> Answer:
    path = f"/v1/traces/{external_id}/messages/batch"
    return await api.call("POST", path, "MessageBatchAnswer", json_body=body, **kw)


async def get_messages(api: Api, external_id: str, parts: bool = True, **kw: Any) -> Answer:
    path = f"/v1/traces/{external_id}/messages"
    params = {"includeParts": "true"} if parts else {}
    return await api.call("GET", path, "MessageListAnswer", key="messages", params=params, **kw)


# ------------------------------------------------------------------------- envelope


async def test_every_route_answers_the_envelope_and_head_only_a_status(api: Api) -> None:
    """Each route's success is `{"ok": true, "data"}` of its schema (Api.call checks it
    against openapi.json), each failure `{"ok": false, "error"}`; HEAD has no body."""
    calls: list[tuple[str, str, str, dict[str, Any]]] = [
        ("GET", "/v1/session", "SessionAnswer", {}),
        ("GET", "/v1/namespaces", "NamespacesAnswer", {}),
        ("PUT", "/v1/traces/t1", "TraceAnswer", {"json_body": trace()}),
        ("GET", "/v1/traces/t1", "TraceAnswer", {}),
        ("GET", "/v1/traces", "TraceListAnswer", {}),
        ("GET", f"/v1/namespaces/{ME.slug}/traces", "NamespaceTraceListAnswer", {}),
        ("POST", "/v1/traces/batch", "BatchAnswer",
         {"json_body": {"traces": [{"externalId": "t2", **trace()}]}}),
        ("POST", "/v1/traces/t1/messages/batch", "MessageBatchAnswer", {"json_body": CLI_BATCH}),
        ("PUT", "/v1/traces/t1/messages/m9", "MessageAnswer",
         {"json_body": {"role": "user", "order": 9, "idScheme": "v2"}}),
        ("GET", "/v1/traces/t1/messages", "MessageListAnswer",
         {"params": {"includeParts": "true"}}),
        ("DELETE", "/v1/traces/t2", "DeletedAnswer", {}),
    ]  # fmt: skip
    for method, path, schema, kw in calls:
        answer = await api.call(method, path, schema, **kw)
        assert (answer.status, answer.raw["ok"]) == (200, True), (path, answer.raw)
    assert (await api.call("DELETE", "/v1/traces/t1", "DeletedAnswer")).body == {"deleted": True}
    for method, path in (("GET", "/v1/traces/t1"), ("DELETE", "/v1/traces/t1"),
                         ("GET", "/v1/traces/t1/messages"), ("GET", "/nothing"),
                         ("PATCH", "/v1/session")):  # fmt: skip
        answer = await api.call(method, path, "Error")
        assert answer.status in (404, 405), (path, answer.raw)
        assert answer.raw["ok"] is False
    answer = await api.call("GET", "/v1/session", "Error", token="nope")
    assert (answer.status, answer.raw["ok"]) == (401, False)
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    await api.put("t3", trace())
    assert (await api.call("HEAD", "/v1/traces/t3", "")).status == 200
    assert (await api.call("HEAD", "/v1/traces/t1", "")).status == 404


async def test_a_busy_database_says_when_to_retry_in_the_header_and_the_body(
    tmp_path: Path,
) -> None:  # (SQLite's lock; PostgreSQL's outage: test_server_postgres.py)
    """503 busy: `Retry-After` (seconds) and `error.details.retryAt` (epoch ms), the one
    the Traces CLI reads."""
    path = tmp_path / "busy.db"
    busy = await SQLiteStorage.open(path, busy_timeout_s=0.05)
    runner = web.AppRunner(make_app(busy, tokens=(TOKEN,)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://{host}:{port}")
            blocker.execute("BEGIN IMMEDIATE")
            before = int(time.time() * 1000)
            answer = await api.put("t1", trace())
            blocker.execute("ROLLBACK")
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "1"
        retry_at = answer.body["error"]["details"]["retryAt"]
        assert before + 1000 <= retry_at <= int(time.time() * 1000) + 1000
    finally:
        blocker.close()
        await runner.cleanup()
        await busy.close()


# ------------------------------------------------------------------ users, namespaces


async def test_session_and_namespaces_name_the_callers_own_namespace(api: Api) -> None:
    """Each token is a user with one individual namespace, derived from the token but not
    the token; `whoami`/`share` read activeNamespace.{id,slug,type,displayName}."""
    session = (await api.call("GET", "/v1/session", "SessionAnswer")).body
    namespace = {"id": ME.namespace_id, "slug": ME.slug, "type": "individual",
                 "displayName": ME.display_name, "role": "owner"}  # fmt: skip
    assert session == {
        "user": {"id": ME.id, "slug": ME.slug, "displayName": ME.display_name},
        "activeNamespace": namespace,
        "namespaces": [namespace],
    }
    assert TOKEN not in json.dumps(session)
    answer = await api.call("GET", "/v1/namespaces", "NamespacesAnswer")
    assert answer.body == {"namespaces": [namespace]}
    theirs = (await api.call("GET", "/v1/session", "SessionAnswer", token=OTHER_TOKEN)).body
    assert theirs["activeNamespace"]["id"] == THEM.namespace_id != ME.namespace_id
    assert theirs["activeNamespace"]["slug"] != ME.slug
    assert user_for(TOKEN) == ME  # stable


async def test_namespace_traces_page_with_continue_cursor_until_is_done(api: Api) -> None:
    """`share status` pages /v1/namespaces/{slug}/traces?limit=&cursor= with
    continueCursor until isDone: every trace of the caller once, newest first."""
    await api.batch([{"externalId": f"t{i}", **trace()} for i in range(5)])
    await api.put("theirs", trace(), token=OTHER_TOKEN)
    seen: list[str] = []
    params = {"limit": "2"}
    for _ in range(5):
        page = await api.call(
            "GET", f"/v1/namespaces/{ME.slug}/traces", "NamespaceTraceListAnswer", params=params
        )
        seen += [t["externalId"] for t in page.body["traces"]]
        if page.body["isDone"]:
            assert page.body["continueCursor"] is None
            break
        params = {"limit": "2", "cursor": page.body["continueCursor"]}
    assert seen == ["t4", "t3", "t2", "t1", "t0"]
    other = await api.call("GET", f"/v1/namespaces/{THEM.slug}/traces", "Error")
    assert (other.status, other.body["error"]["code"]) == (404, "not_found")


async def test_two_tokens_never_see_change_or_delete_each_others_traces(api: Api) -> None:
    """The second token cannot list, read, HEAD, overwrite (a PUT to the first's
    externalId is 404 and changes nothing), delete, or read or add messages of the
    first token's trace; its own trace of another id works."""
    await api.put("t1", trace(title="mine"))
    await post_messages(api, "t1", CLI_BATCH)
    mine = (await api.get("t1")).body
    them: dict[str, Any] = {"token": OTHER_TOKEN}
    assert (await api.listing(token=OTHER_TOKEN)).body["traces"] == []
    assert (await api.get("t1", **them)).status == 404
    assert (await api.call("HEAD", "/v1/traces/t1", "", **them)).status == 404
    hijack = await api.put("t1", trace(title="theirs"), **them)
    assert (hijack.status, hijack.body["error"]["code"]) == (404, "not_found")
    batch = await api.batch([{"externalId": "t1", **trace(title="theirs")}], **them)
    assert batch.body["results"][0]["status"] == 404
    assert (await api.call("DELETE", "/v1/traces/t1", "Error", **them)).status == 404
    assert (await get_messages(api, "t1", **them)).status == 404
    assert (await post_messages(api, "t1", CLI_BATCH, **them)).status == 404
    put = await api.call("PUT", "/v1/traces/t1/messages/m1", "Error",
                         json_body={"role": "user", "order": 9}, **them)  # fmt: skip
    assert put.status == 404
    assert (await api.get("t1")).body == mine
    assert len((await get_messages(api, "t1")).body) == 3
    assert (await api.put("t2", trace(), **them)).body["namespace"]["id"] == THEM.namespace_id
    assert [t["externalId"] for t in (await api.listing()).body["traces"]] == ["t1"]


async def test_a_target_namespace_must_be_the_callers_own(api: Api) -> None:
    """targetNamespaceId (sent with a user token) = the caller's namespace: stored; any
    other: 403 and nothing stored."""
    answer = await api.put("t1", trace(targetNamespaceId=THEM.namespace_id))
    assert (answer.status, answer.body["error"]["code"]) == (403, "forbidden")
    assert (await api.get("t1")).status == 404
    answer = await api.put("t1", trace(targetNamespaceId=ME.namespace_id))
    assert answer.status == 200
    assert "targetNamespaceId" not in answer.body


# --------------------------------------------------------------------------- traces


async def test_the_clis_trace_fields_are_stored_and_answered_as_a_trace_detail(
    api: Api,
) -> None:
    """The 14 fields the CLI PUTs (relatedTo naming a trace the server lacks) come back
    with what `traces sync` reads: id, namespace, createdBy, userSlug, agentCreator,
    messageCount, createdAt; unknown fields are ignored, never a 422."""
    body = {**CLI_TRACE, "targetNamespaceId": ME.namespace_id, "someFutureField": {"x": 1}}
    answer = await api.put(SUBAGENT, body)
    assert answer.status == 200, answer.body
    detail = answer.body
    assert detail == {
        **CLI_TRACE,
        "externalId": SUBAGENT,
        "id": detail["id"],
        "namespace": {"id": ME.namespace_id, "slug": ME.slug},
        "createdBy": ME.id,
        "userSlug": ME.slug,
        "agentCreator": {"id": ME.id, "slug": ME.slug},
        "messageCount": 0,
        "createdAt": detail["createdAt"],
        "updatedAt": detail["updatedAt"],
    }
    again = await api.put(SUBAGENT, {**body, "anotherUnknown": [1, 2]})
    assert again.body == detail  # same fields: a no-op, the same id
    assert (await api.get(SUBAGENT)).body == detail


# ------------------------------------------------------------------------- messages


async def test_a_split_message_keeps_every_part_in_order(api: Api) -> None:
    """The CLI's batch with one message externalId twice (order 2: tool_call, order 3:
    text): one message at order 2 with both parts, fields merged; messageCount 3."""
    await api.put(PARENT, {"agentId": "claude-code"})
    answer = await post_messages(api, PARENT, CLI_BATCH)
    assert answer.body == {"messages": 3}
    found = (await get_messages(api, PARENT)).body
    assert [(m["externalId"], m["order"]) for m in found] == [
        ("3d27d528-0000-4000-8000-000000000004", 1),
        (SPLIT, 2),
        ("3be17f24-0000-4000-8000-000000000006", 4),
    ]
    assert found[1] == {
        "externalId": SPLIT,
        "sourceKey": "assistant:9d2f0b63",
        "role": "assistant",
        "textContent": "I'll look at the sync command first.",
        "model": "claude-sonnet-4-5-20250929",
        "order": 2,
        "timestamp": 1795165804502,
        "tokenUsage": USAGE,
        "parts": [TOOL_CALL, TEXT],
    }
    assert found[0]["parts"] == CLI_BATCH["messages"][0]["parts"]
    assert (await api.get(PARENT)).body["messageCount"] == 3
    without = (await get_messages(api, PARENT, parts=False)).body
    assert [m["externalId"] for m in without] == [m["externalId"] for m in found]
    assert all("parts" not in m for m in without)


async def test_a_split_message_sent_in_two_batches_ends_the_same(api: Api) -> None:
    """`refresh` may send the halves of a split message in two requests: same result."""
    await api.put("one", {"agentId": "claude-code"})
    await api.put("two", {"agentId": "claude-code"})
    await post_messages(api, "one", CLI_BATCH)
    entries = CLI_BATCH["messages"]
    await post_messages(api, "two", {"idScheme": "v2", "messages": entries[:2]})
    await post_messages(api, "two", {"idScheme": "v2", "messages": entries[2:]})
    assert (await get_messages(api, "two")).body == (await get_messages(api, "one")).body


async def test_the_same_batch_twice_changes_nothing(api: Api, db_target: str) -> None:
    """Upsert by message externalId (and part externalId): a repeat (`share` again sends
    every message) leaves the messages, their count and the trace as they were."""
    await api.put(PARENT, {"agentId": "claude-code"})
    await post_messages(api, PARENT, CLI_BATCH)
    before = ((await get_messages(api, PARENT)).body, (await api.get(PARENT)).body)
    assert (await post_messages(api, PARENT, CLI_BATCH)).body == {"messages": 3}
    after = ((await get_messages(api, PARENT)).body, (await api.get(PARENT)).body)
    assert after == before
    assert await table_rows(db_target, "messages", "parts") == [3, 4]


async def test_follow_puts_one_message_by_its_path_id(api: Api) -> None:
    """`share --follow`: PUT .../messages/{id} with idScheme and no externalId in the body
    answers the stored message; it merges like a batch entry and counts."""
    await api.put(PARENT, {"agentId": "claude-code"})
    await post_messages(api, PARENT, CLI_BATCH)
    entry = message("22a83323-0000-4000-8000-000000000008", 6)
    del entry["externalId"]
    path = f"/v1/traces/{PARENT}/messages/22a83323-0000-4000-8000-000000000008"
    answer = await api.call(
        "PUT", path, "MessageAnswer", key="message", json_body={**entry, "idScheme": "v2"}
    )
    assert answer.body == {"externalId": "22a83323-0000-4000-8000-000000000008", **entry}
    again = await api.call("PUT", path, "MessageAnswer", key="message", json_body=entry)
    assert again.body == answer.body
    assert (await api.get(PARENT)).body["messageCount"] == 4
    assert (await get_messages(api, PARENT)).body[-1] == answer.body


async def test_messages_of_an_unknown_trace_are_404_and_of_a_new_one_empty(api: Api) -> None:
    """No such trace: 404 on every message route (nothing stored); a trace without
    messages lists `[]`."""
    assert (await post_messages(api, "nope", CLI_BATCH)).status == 404
    assert (await get_messages(api, "nope")).status == 404
    put = await api.call("PUT", "/v1/traces/nope/messages/m1", "Error",
                         json_body={"role": "user", "order": 1})  # fmt: skip
    assert put.status == 404
    await api.put("nope", {"agentId": "codex"})
    assert (await get_messages(api, "nope")).body == []


async def test_a_batch_of_1001_messages_is_413_and_of_1000_is_stored(api: Api) -> None:
    """The CLI sends at most 1000 per batch: 1001 is refused whole, 1000 stored."""
    await api.put("t1", {"agentId": "codex"})
    entries = [message(f"m{i}", i) for i in range(1001)]
    answer = await post_messages(api, "t1", {"idScheme": "v2", "messages": entries})
    assert (answer.status, answer.body["error"]["code"]) == (413, "too_many_items")
    assert (await get_messages(api, "t1")).body == []
    answer = await post_messages(api, "t1", {"idScheme": "v2", "messages": entries[:1000]})
    assert answer.body == {"messages": 1000}
    assert (await api.get("t1")).body["messageCount"] == 1000


async def test_a_message_body_above_8_mib_is_stored_up_to_the_limit(api: Api) -> None:
    """The CLI's 8 MiB cut is an estimate that real bodies exceed: a body just under
    MAX_MESSAGE_BODY (well above 8 MiB) is stored; one byte more is 413."""
    await api.put("t1", {"agentId": "codex"})
    empty = json.dumps({"messages": [message(f"m{i}", i, textContent="") for i in range(3)]})
    text = "x" * ((MAX_MESSAGE_BODY - len(empty)) // 3)
    body = {"messages": [message(f"m{i}", i, textContent=text) for i in range(3)]}
    data = json.dumps(body).encode()
    assert 8 * 1024 * 1024 < len(data) <= MAX_MESSAGE_BODY
    path = "/v1/traces/t1/messages/batch"
    assert (await api.call("POST", path, "MessageBatchAnswer", data=data)).status == 200
    assert [len(m["textContent"]) for m in (await get_messages(api, "t1")).body] == [len(text)] * 3
    over = data[:-1] + b" " * (MAX_MESSAGE_BODY + 1 - len(data)) + b"}"
    answer = await api.call("POST", path, "Error", data=over)
    assert (answer.status, answer.body["error"]["code"]) == (413, "too_large")


async def test_deep_tool_arguments_are_accepted_and_bad_messages_are_422(api: Api) -> None:
    """Tool call args nested 50 deep are stored as sent; a message without role, a part
    without content, or a lone surrogate in a part's content: 422, nothing stored."""
    await api.put("t1", {"agentId": "codex"})
    args: dict[str, Any] = {"leaf": True}
    for _ in range(50):
        args = {"a": args}
    deep = {**TOOL_CALL, "content": {**TOOL_CALL["content"], "args": args}}
    entry = message("m1", 1, parts=[deep])
    assert (await post_messages(api, "t1", {"messages": [entry]})).status == 200
    assert (await get_messages(api, "t1")).body[0]["parts"] == [deep]
    bad_part = {"type": "text", "content": {"text": "\ud800"}}
    for bad in (
        {k: v for k, v in message("m2", 2).items() if k != "role"},
        message("m2", 2, parts=[{"type": "text"}]),
        {**message("m2", 2), "order": "2"},
        message("m2", 2, parts=[bad_part]),
    ):
        answer = await post_messages(api, "t1", {"messages": [bad]})
        assert (answer.status, answer.body["error"]["code"]) == (422, "invalid"), bad
    assert len((await get_messages(api, "t1")).body) == 1


async def test_delete_removes_the_trace_with_its_messages(api: Api, db_target: str) -> None:
    """DELETE: data.deleted; the trace and every message and part are gone (the same
    externalId stored again starts empty, with a new id)."""
    first = (await api.put(PARENT, {"agentId": "claude-code"})).body
    await post_messages(api, PARENT, CLI_BATCH)
    answer = await api.call("DELETE", f"/v1/traces/{PARENT}", "DeletedAnswer")
    assert answer.body == {"deleted": True}
    assert (await api.get(PARENT)).status == 404
    assert (await get_messages(api, PARENT)).status == 404
    assert await table_rows(db_target, "traces", "messages", "parts") == [0, 0, 0]
    again = (await api.put(PARENT, {"agentId": "claude-code"})).body
    assert (again["messageCount"], again["id"] != first["id"]) == (0, True)
    assert (await get_messages(api, PARENT)).body == []


#: strings an agent's output may hold: NUL (which PostgreSQL's text cannot store) alone,
#: inside text, doubled, next to a backslash, and beside rare characters
AWKWARD = ("\x00", "a\x00b", "\x00\x00", "\\\x00\\u0000", "\uffff\x00\uffff0", "x\x01\x00\x7f")
SCP = "git@github.com:acme/app"


async def test_a_nul_character_is_stored_and_answered_as_sent_and_found_by_filters(
    api: Api,
) -> None:
    """U+0000 in any string a trace or message stores comes back exactly as sent, from
    PUT, batch, message batch and message PUT, on both engines; the filters find it."""
    strings = {
        name: f"{name} {AWKWARD[n % len(AWKWARD)]} end"
        for n, name in enumerate(
            ("title", "preview", "projectPath", "projectName", "model", "visibility",
             "gitBranch", "relationshipType")
        )
    }  # fmt: skip
    put = await api.put("nul-put", trace(**strings))
    assert put.status == 200, put.body
    assert {name: put.body[name] for name in strings} == strings
    batch = await api.batch(
        [
            {"externalId": f"nul-{n}", **trace(title=s, gitBranch=s, gitRemoteUrl=f"{SCP}{s}.git")}
            for n, s in enumerate(AWKWARD)
        ]
    )
    assert [r["status"] for r in batch.body["results"]] == [200] * len(AWKWARD)
    assert (await api.get("nul-put")).body == put.body
    for n, text in enumerate(AWKWARD):
        got = (await api.get(f"nul-{n}")).body
        remote = f"https://github.com/acme/app{text}"  # stored canonical
        assert (got["title"], got["gitBranch"], got["gitRemoteUrl"]) == (text, text, remote)
        found = await api.every_trace(gitBranch=text, gitRemoteUrl=remote, agentId="claude-code")
        assert [t["externalId"] for t in found] == [f"nul-{n}"]
    assert (await api.listing(agentId="claude\x00code")).body["traces"] == []

    entries = [
        message(f"m{n}", n, textContent=text, sourceKey=text, model=text, role=f"user{text}")
        for n, text in enumerate(AWKWARD)
    ]
    for n, entry in enumerate(entries):
        entry["parts"][0]["content"] = {"text": AWKWARD[n], AWKWARD[n]: [AWKWARD[n]]}
        entry["parts"][0]["sourceKey"] = entry["parts"][0]["type"] = f"text{AWKWARD[n]}"
    posted = await post_messages(api, "nul-put", {"idScheme": "v2", "messages": entries})
    assert posted.body == {"messages": len(AWKWARD)}
    entry = message("m-put", 99, textContent="\x00 put \x00")
    del entry["externalId"]
    path = "/v1/traces/nul-put/messages/m-put"
    answer = await api.call("PUT", path, "MessageAnswer", key="message", json_body=entry)
    assert answer.body == {"externalId": "m-put", **entry}
    assert (await get_messages(api, "nul-put")).body == [*entries, answer.body]
    bare = [{k: v for k, v in e.items() if k != "parts"} for e in entries]
    assert (await get_messages(api, "nul-put", parts=False)).body[:-1] == bare
    # the same again changes nothing: the stored strings compare equal to the sent ones
    again = await post_messages(api, "nul-put", {"idScheme": "v2", "messages": entries})
    assert again.body == posted.body
    resent = await api.put("nul-put", trace(**strings))
    assert resent.body == {**put.body, "messageCount": len(AWKWARD) + 1}
