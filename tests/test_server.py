"""The reference API server: a real server on loopback, a real client, a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from tests.helpers import ServerProcess, isolated_env
from tracesd.server.app import MAX_BATCH, MAX_BODY, make_app
from tracesd.server.auth import user_for
from tracesd.server.schema import validate
from tracesd.server.sqlite_store import SCHEMA_VERSION, SQLiteStorage
from tracesd.server.storage import Storage, open_storage

TOKEN = "token-one"
OTHER_TOKEN = "token-two"
REF = "0123456789abcdef0123456789abcdef01234567"
REMOTE = "https://github.com/acme/app"  # canonical (INTERFACE section 5)


@dataclass
class Answer:
    status: int
    #: a success's `data` (or the one object under `key` in it); an error's whole body
    body: Any
    headers: dict[str, str]
    #: the whole body as sent (None for HEAD)
    raw: Any = None


class Api:
    """A client of one running server; every answer's body is checked against openapi.json
    (its envelope included)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        schema: str,
        *,
        key: str | None = None,
        token: str | None = TOKEN,
        json_body: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method,
            self.base + path,
            headers=headers,
            json=json_body,
            data=io.BytesIO(data) if data is not None else None,
            params=params,
        ) as response:
            if method == "HEAD":
                assert await response.read() == b""
                return Answer(response.status, None, dict(response.headers))
            raw = await response.json(content_type=None)
            validate(schema if response.status < 400 else "Error", raw)
            body = raw if response.status >= 400 else raw["data"]
            if key is not None and response.status < 400:
                body = body[key]
            return Answer(response.status, body, dict(response.headers), raw)

    async def put(self, external_id: str, body: Any, **kw: Any) -> Answer:
        return await self.call(
            "PUT", f"/v1/traces/{external_id}", "TraceAnswer", key="trace", json_body=body, **kw
        )

    async def get(self, external_id: str, **kw: Any) -> Answer:
        path = f"/v1/traces/{external_id}"
        return await self.call("GET", path, "TraceAnswer", key="trace", **kw)

    async def batch(self, traces: list[Any], **kw: Any) -> Answer:
        return await self.call(
            "POST", "/v1/traces/batch", "BatchAnswer", json_body={"traces": traces}, **kw
        )

    async def listing(self, token: str = TOKEN, **params: str) -> Answer:
        return await self.call("GET", "/v1/traces", "TraceListAnswer", params=params, token=token)

    async def every_trace(self, **params: str) -> list[dict[str, Any]]:
        """Every page of a listing, following nextCursor."""
        traces: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.listing(**params, **({"cursor": cursor} if cursor else {}))
            assert page.status == 200, page.body
            traces += page.body["traces"]
            cursor = page.body["nextCursor"]
            if cursor is None:
                return traces


StartServer = Callable[..., Awaitable[Api]]
#: a test of what only a SQLite file has (its mode, WAL, its locks, its old layouts)
SQLITE_ONLY = pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)


@pytest.fixture
async def db(db_target: str) -> AsyncIterator[Storage]:
    """The storage the servers run on: each test runs once on SQLite, once on PostgreSQL."""
    db = await open_storage(db_target)
    yield db
    await db.close()


@pytest.fixture
async def start_server(db: Storage) -> AsyncIterator[StartServer]:
    """Start servers on 127.0.0.1, port 0; every one is cleaned up at the end of the test."""
    runners: list[web.AppRunner] = []
    session = aiohttp.ClientSession()

    async def start(
        tokens: tuple[str, ...] | None = (TOKEN,), *, on: SQLiteStorage | None = None
    ) -> Api:
        runner = web.AppRunner(make_app(on or db, tokens=tokens), access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return Api(session, f"http://{host}:{port}")

    yield start
    await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def api(start_server: StartServer) -> Api:
    return await start_server()


def trace(**fields: Any) -> dict[str, Any]:
    return {
        "agentId": "claude-code",
        "title": "Fix the flaky test",
        "preview": "Done.",
        "timestamp": 1_764_000_000_000,
        "projectPath": "/home/me/app",
        "gitRemoteUrl": REMOTE,
        "gitBranch": "main",
        "gitRef": REF,
        **fields,
    }


def item(external_id: str, **fields: Any) -> dict[str, Any]:
    return {"externalId": external_id, **trace(**fields)}


# ------------------------------------------------------------------------------ auth


async def test_a_request_without_a_token_is_refused_with_401_and_www_authenticate(
    api: Api,
) -> None:
    """No Authorization header: 401, `WWW-Authenticate: Bearer`, the error body."""
    answer = await api.get("t1", token=None)
    assert (answer.status, answer.body["error"]["code"]) == (401, "unauthorized")
    assert answer.headers["WWW-Authenticate"] == "Bearer"


async def test_a_wrong_token_or_another_scheme_is_refused(api: Api) -> None:
    """An unknown bearer token, an empty one and a Basic header are all 401."""
    for token in ("nope", "", f"{TOKEN}x", TOKEN[:-1]):
        assert (await api.put("t1", trace(), token=token)).status == 401
    async with api.session.get(
        api.base + "/v1/traces", headers={"Authorization": f"Basic {TOKEN}"}
    ) as response:
        assert response.status == 401
    assert (await api.get("t1")).status == 404  # nothing was stored by the refused PUTs


async def test_every_configured_token_is_accepted(start_server: StartServer) -> None:
    """With several tokens configured, each one works (each on its own traces)."""
    api = await start_server((TOKEN, OTHER_TOKEN))
    assert (await api.put("t1", trace(), token=TOKEN)).status == 200
    assert (await api.put("t2", trace(), token=OTHER_TOKEN)).status == 200
    assert (await api.get("t2", token=OTHER_TOKEN)).status == 200
    assert (await api.get("t1", token="token-three")).status == 401


async def test_without_auth_no_token_is_needed(start_server: StartServer) -> None:
    """tokens=None (`--no-auth`) serves every request."""
    api = await start_server(None)
    assert (await api.put("t1", trace(), token=None)).status == 200


async def test_an_empty_token_list_is_refused(db: Storage) -> None:
    """Auth on with no token would lock everyone out: make_app refuses it."""
    with pytest.raises(ValueError, match="at least one token"):
        make_app(db, tokens=())


async def test_tokens_and_the_authorization_header_are_never_logged(api: Api) -> None:
    """A refused request is logged without the token it carried."""
    with structlog.testing.capture_logs() as logs:
        await api.get("t1", token="secret-guess")
        await api.get("t1")
    assert [entry["event"] for entry in logs] == ["server.unauthorized"]
    assert "secret-guess" not in repr(logs)
    assert TOKEN not in repr(logs)


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agentId": 7}, "agentId"),
        ({"agentId": "Claude Code"}, "agentId"),
        ({"timestamp": "1764000000000"}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
        ({"timestamp": -1}, "timestamp"),
        ({"title": "x" * 65537}, "title"),
        ({"preview": "x" * 2001}, "preview"),
        ({"gitBranch": "b" * 256}, "gitBranch"),
        ({"gitRef": "HEAD"}, "gitRef"),
        ({"gitRef": REF.upper()}, "gitRef"),
        ({"gitBranch": None}, "gitBranch"),
        ({"projectName": 7}, "projectName"),
        ({"model": "m" * 257}, "model"),
        ({"tokenUsage": {"inputTokenCount": "12"}}, "tokenUsage"),
        ({"tokenUsage": 12}, "tokenUsage"),
        ({"relatedTo": "a/b"}, "relatedTo"),
        ({"sourceCreatedAt": -1}, "sourceCreatedAt"),
        ({"targetNamespaceId": 5}, "targetNamespaceId"),
    ],
)
async def test_a_schema_violation_is_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    """Wrong type, too long, bad pattern, null: 422 and the field's name."""
    answer = await api.put("t1", trace(**body))
    assert (answer.status, answer.body["error"]["code"]) == (422, "invalid")
    assert field in answer.body["error"]["message"]
    assert (await api.get("t1")).status == 404


async def test_a_missing_agent_id_or_a_body_that_is_not_an_object_is_422(api: Api) -> None:
    """agentId is required; the body must be an object."""
    for body in ({"title": "x"}, [trace()], "x"):
        answer = await api.put("t1", body)
        assert answer.status == 422, answer.body
    assert "agentId" in (await api.put("t1", {"title": "x"})).body["error"]["message"]


@pytest.mark.parametrize("external_id", ["x" * 257, "a%01b", "a%2Fb"])
async def test_a_bad_external_id_in_the_path_is_422(api: Api, external_id: str) -> None:
    """Too long, a control character, an encoded slash: 422 naming externalId."""
    answer = await api.put(external_id, trace())
    assert answer.status == 422
    assert "externalId" in answer.body["error"]["message"]


async def test_a_lone_surrogate_is_422_not_a_database_error(api: Api) -> None:
    """JSON may escape a lone surrogate; it cannot be stored as UTF-8, so it is invalid."""
    answer = await api.call(
        "PUT", "/v1/traces/t1", "TraceAnswer", data=b'{"agentId": "codex", "title": "\\ud800"}'
    )
    assert answer.status == 422
    assert "title" in answer.body["error"]["message"]


async def test_a_lone_surrogate_in_one_batch_item_fails_that_item_only(api: Api) -> None:
    """The whole batch is checked at once; a broken string sends its item alone to 422,
    naming the field, and the items beside it are stored."""
    data = (
        b'{"traces": [{"externalId": "a", "agentId": "codex"},'
        b' {"externalId": "b", "agentId": "codex", "projectPath": "/w/\\udc80"},'
        b' {"externalId": "c", "agentId": "codex"}]}'
    )
    answer = await api.call("POST", "/v1/traces/batch", "BatchAnswer", data=data)
    assert answer.status == 200
    results = answer.body["results"]
    assert [r["status"] for r in results] == [200, 422, 200]
    assert "projectPath" in results[1]["error"]["message"]


async def test_malformed_json_is_400(api: Api) -> None:
    """A body that is not JSON (or not UTF-8) is 400 on both write endpoints."""
    for path, schema in (("/v1/traces/t1", "TraceAnswer"), ("/v1/traces/batch", "BatchAnswer")):
        method = "PUT" if path.endswith("t1") else "POST"
        for data in (b'{"agentId": ', b"\xff\xfe\x00", b""):
            answer = await api.call(method, path, schema, data=data)
            assert (answer.status, answer.body["error"]["code"]) == (400, "bad_json")


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the interpreter's recursion limit
        b'{"agentId": "codex", "title": ' + b"[" * 70 + b"]" * 70 + b"}",
        b'{"agentId": "codex", "timestamp": 1e400}',
        b'{"agentId": "codex", "timestamp": ' + b"9" * 400 + b"}",
        b'{"agentId": "codex", "timestamp": NaN}',
        b'{"agentId": "codex", "timestamp": -Infinity}',
        b'{"agentId": "codex", "agentId": "pi"}',
        b'{"agentId": "codex", "title": "\xc3\x28"}',
        '{"agentId": "codex"}'.encode("utf-16"),
        b'\xef\xbb\xbf{"agentId": "codex"}',
    ],
)
async def test_a_body_that_does_not_parse_is_400_and_logs_no_traceback(
    api: Api, data: bytes
) -> None:
    """Too deep, a number out of range, NaN/Infinity, a duplicate key, not UTF-8, a BOM:
    400 `bad_json` on both write endpoints, nothing stored, no internal error logged."""
    with structlog.testing.capture_logs() as logs:
        for method, path, schema in (
            ("PUT", "/v1/traces/t1", "TraceAnswer"),
            ("POST", "/v1/traces/batch", "BatchAnswer"),
        ):
            answer = await api.call(method, path, schema, data=data)
            assert (answer.status, answer.body["error"]["code"]) == (400, "bad_json")
    assert (await api.get("t1")).status == 404
    assert not [entry for entry in logs if entry["log_level"] == "error"], logs


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    """A body larger than MAX_BODY is refused with 413 before it is parsed."""
    data = b'{"agentId": "codex", "title": "' + b"x" * MAX_BODY + b'"}'
    answer = await api.call("PUT", "/v1/traces/t1", "TraceAnswer", data=data)
    assert (answer.status, answer.body["error"]["code"]) == (413, "too_large")


async def test_a_batch_of_more_than_500_items_is_413_and_of_500_is_stored(api: Api) -> None:
    """MAX_BATCH + 1 items: 413 and nothing stored; exactly MAX_BATCH: all stored."""
    assert MAX_BATCH == 500
    answer = await api.batch([item(f"t{i}") for i in range(MAX_BATCH + 1)])
    assert (answer.status, answer.body["error"]["code"]) == (413, "too_many_items")
    assert (await api.get("t0")).status == 404

    answer = await api.batch([item(f"t{i}") for i in range(MAX_BATCH)])
    assert answer.status == 200
    assert [r["status"] for r in answer.body["results"]] == [200] * MAX_BATCH


@pytest.mark.parametrize("body", [{"traces": []}, {"items": [item("t1")]}, {"traces": {}}, []])
async def test_a_body_that_is_not_a_batch_is_400(api: Api, body: Any) -> None:
    """No traces, an empty list, the wrong envelope: 400 `not_a_batch`."""
    answer = await api.call("POST", "/v1/traces/batch", "BatchAnswer", json_body=body)
    assert (answer.status, answer.body["error"]["code"]) == (400, "not_a_batch")


# ------------------------------------------------------------------------- upserts


async def test_put_returns_the_trace_detail_and_get_returns_the_same(api: Api) -> None:
    """PUT answers the stored TraceDetail; GET answers it again."""
    put = await api.put("t1", trace())
    assert put.status == 200
    assert put.body == {**trace(), "externalId": "t1", **_stamps(put.body)}
    assert put.body["createdAt"] == put.body["updatedAt"]
    assert (await api.get("t1")).body == put.body


async def test_putting_the_same_body_twice_is_idempotent(api: Api) -> None:
    """Same body again: the identical TraceDetail, updatedAt included."""
    first = await api.put("t1", trace())
    await asyncio.sleep(0.01)
    second = await api.put("t1", trace())
    assert second.body == first.body
    assert (await api.batch([item("t1")])).body["results"] == [{"externalId": "t1", "status": 200}]
    assert (await api.get("t1")).body == first.body


async def test_fields_left_out_keep_their_stored_values(api: Api) -> None:
    """An upsert with only agentId and a new title keeps every other field."""
    first = await api.put("t1", trace())
    second = await api.put("t1", {"agentId": "claude-code", "title": "Renamed"})
    assert second.body == {**first.body, "title": "Renamed", "updatedAt": second.body["updatedAt"]}


async def test_created_at_is_set_once_and_updated_at_moves_only_on_a_real_change(
    api: Api,
) -> None:
    """createdAt never changes; updatedAt strictly increases on a change, else stays."""
    first = (await api.put("t1", trace())).body
    changed = (await api.put("t1", trace(gitBranch="feature/x"))).body
    assert changed["createdAt"] == first["createdAt"]
    assert changed["updatedAt"] > first["updatedAt"]  # even within the same millisecond
    same = (await api.put("t1", {"agentId": "claude-code", "gitBranch": "feature/x"})).body
    assert same == changed


async def test_get_of_an_unknown_trace_is_404(api: Api) -> None:
    """No such trace: 404 with the error body."""
    answer = await api.get("missing")
    assert (answer.status, answer.body["error"]["code"]) == (404, "not_found")


async def test_unknown_routes_and_methods_answer_the_error_body(api: Api) -> None:
    """aiohttp's own 404 and 405 come with the API's error body (and Allow)."""
    answer = await api.call("GET", "/v2/nothing", "Error")
    assert (answer.status, answer.body["error"]["code"]) == (404, "not_found")
    answer = await api.call("PATCH", "/v1/traces/t1", "Error")
    assert (answer.status, answer.body["error"]["code"]) == (405, "method_not_allowed")
    assert "PUT" in answer.headers["Allow"]


async def test_a_float_timestamp_with_no_fraction_is_stored_as_an_integer(api: Api) -> None:
    """JSON Schema counts 1.0 as an integer; it is stored and answered as 1."""
    answer = await api.put("t1", trace(timestamp=1.0))
    assert answer.body["timestamp"] == 1
    assert isinstance(answer.body["timestamp"], int)


async def test_concurrent_puts_each_get_their_own_trace_back(api: Api) -> None:
    """Puts committed together (group commit) still answer each their own TraceDetail."""
    answers = await asyncio.gather(*(api.put(f"t{i}", trace(title=f"n{i}")) for i in range(40)))
    assert [a.body["title"] for a in answers] == [f"n{i}" for i in range(40)]
    assert len((await api.listing(limit="500")).body["traces"]) == 40


# --------------------------------------------------------------------------- batches


async def test_one_bad_item_of_a_batch_gets_its_own_422_and_the_others_are_stored(
    api: Api,
) -> None:
    """Results in request order; the bad item names its field; the good ones are stored."""
    answer = await api.batch(
        [item("a"), item("b", gitRef="nope"), {"externalId": 5, "agentId": "codex"}, item("c")]
    )
    assert answer.status == 200
    results = answer.body["results"]
    assert [(r["externalId"], r["status"]) for r in results] == [
        ("a", 200),
        ("b", 422),
        ("", 422),
        ("c", 200),
    ]
    assert "gitRef" in results[1]["error"]["message"]
    assert "externalId" in results[2]["error"]["message"]
    assert [(await api.get(i)).status for i in ("a", "b", "c")] == [200, 404, 200]


async def test_the_same_trace_twice_in_one_batch_ends_as_if_sent_in_order(api: Api) -> None:
    """Items apply in order: the later one wins, fields it leaves out are kept."""
    answer = await api.batch(
        [item("t1", title="first"), {"externalId": "t1", "agentId": "codex", "title": "second"}]
    )
    assert [r["status"] for r in answer.body["results"]] == [200, 200]
    stored = (await api.get("t1")).body
    assert (stored["title"], stored["agentId"], stored["gitRef"]) == ("second", "codex", REF)


async def test_a_batch_stores_what_put_would_store(api: Api) -> None:
    """A batched trace reads back exactly like one PUT with the same fields."""
    await api.batch([item("b1")])
    put = (await api.put("p1", trace())).body
    batched = (await api.get("b1")).body
    assert {**batched, "externalId": "p1", **_stamps(put)} == put


# --------------------------------------------------------------------------- listing


async def test_list_filters_by_remote_branch_agent_and_their_combination(api: Api) -> None:
    """Each filter matches one value (a repository in any form of its URL); filters
    combine with AND."""
    other = "https://github.com/acme/lib.git"
    await api.batch(
        [
            item("a", gitBranch="main"),
            item("b", gitBranch="dev"),
            item("c", gitBranch="main", agentId="codex"),
            item("d", gitRemoteUrl=other, gitBranch="main"),
        ]
    )

    async def ids(**params: str) -> list[str]:
        return [t["externalId"] for t in await api.every_trace(**params)]

    assert await ids() == ["d", "c", "b", "a"]
    assert await ids(gitRemoteUrl=REMOTE) == ["c", "b", "a"]
    assert await ids(gitRemoteUrl=other) == ["d"]
    assert await ids(gitRemoteUrl="https://github.com/acme/ap") == []
    assert await ids(gitBranch="main") == ["d", "c", "a"]
    assert await ids(agentId="codex") == ["c"]
    assert await ids(gitRemoteUrl=REMOTE, gitBranch="main") == ["c", "a"]
    assert await ids(gitRemoteUrl=REMOTE, gitBranch="main", agentId="claude-code") == ["a"]


async def test_cursor_pagination_yields_every_trace_once_while_traces_are_added(
    api: Api,
) -> None:
    """250 traces, limit 100: three pages, newest first; inserts between pages shift nothing."""
    for start in range(0, 250, 50):
        await api.batch([item(f"t{i:03d}") for i in range(start, start + 50)])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = (await api.listing(**params)).body
        pages += 1
        seen += [t["externalId"] for t in page["traces"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
        # new traces and an update of an unseen one, between two pages
        await api.batch([item(f"new{pages}-{i}") for i in range(30)])
        await api.put("t000", trace(title="updated while paging"))
    assert pages == 3
    assert seen == [f"t{i:03d}" for i in reversed(range(250))]


async def test_a_bad_cursor_or_limit_is_400(api: Api) -> None:
    """A cursor this server did not hand out, or a limit outside 1..500: 400."""
    for params in (
        {"cursor": "not-a-cursor"},
        {"cursor": "c2VxOi0x"},  # "seq:-1"
        {"cursor": "c2VxOjk5OTk5OTk5OTk5OTk5OTk5OTk5"},  # "seq:" and 20 nines: not an int64
        {"cursor": "x" * 300},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"gitRemoteUrl": "x" * 2049},
    ):
        answer = await api.listing(**params)
        assert answer.status == 400, params
        assert answer.body["error"]["code"] in ("bad_cursor", "bad_query")


async def test_an_empty_listing_has_no_next_cursor(api: Api) -> None:
    """No traces: an empty page, nextCursor null."""
    assert (await api.listing()).body == {"traces": [], "nextCursor": None}


# ------------------------------------------------------------------------- database


@SQLITE_ONLY
async def test_the_database_is_private_and_in_wal_mode(db_target: str, db: Storage) -> None:
    """Directory 0700, file 0600, journal_mode WAL."""
    assert stat.S_IMODE(os.stat(os.path.dirname(db_target)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(db_target).st_mode) == 0o600
    with sqlite3.connect(db_target) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@SQLITE_ONLY
async def test_a_database_locked_by_another_writer_answers_503_and_stores_nothing(
    tmp_path: Path, start_server: StartServer
) -> None:
    """Busy past the busy timeout: 503 with Retry-After; once free, the same batch works."""
    path = tmp_path / "busy.db"
    busy = await SQLiteStorage.open(path, busy_timeout_s=0.05)
    try:
        api = await start_server(on=busy)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            answer = await api.batch([item("t1")])
            assert (answer.status, answer.body["error"]["code"]) == (503, "unavailable")
            assert answer.headers["Retry-After"] == "1"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert (await api.get("t1")).status == 404
        assert (await api.batch([item("t1")])).status == 200
    finally:
        await busy.close()


async def test_traces_survive_a_restart_of_the_server(db_target: str) -> None:
    """What one server stored, the next one on the same database answers."""
    first = await open_storage(db_target)
    (stored,) = await first.upsert_many([item("t1")])
    await first.close()
    second = await open_storage(db_target)
    try:
        assert await second.get("t1") == stored
    finally:
        await second.close()


# ------------------------------------------------------------- repository identity

FORMS = (
    "git@github.com:acme/app.git",
    "ssh://git@GitHub.com:22/acme/app.git/",
    "https://u:tok@github.com/acme/app.git/?q=1#f",
    "https://github.com/acme/app.git",
    REMOTE,
)


async def test_a_remote_in_any_form_is_stored_canonical_and_found_by_any_form(api: Api) -> None:
    """Clients that send one repository in different forms (INTERFACE section 5) store
    one canonical URL, without credentials; `?gitRemoteUrl=` in any form finds them all."""
    for i, form in enumerate(FORMS):
        answer = await api.put(f"t{i}", trace(gitRemoteUrl=form))
        assert answer.body["gitRemoteUrl"] == REMOTE
    await api.batch([item("b", gitRemoteUrl="git@github.com:acme/app")])
    everything = ["b", *(f"t{i}" for i in reversed(range(len(FORMS))))]
    for form in FORMS:
        found = await api.every_trace(gitRemoteUrl=form)
        assert [t["externalId"] for t in found] == everything, form
        assert {t["gitRemoteUrl"] for t in found} == {REMOTE}
    assert await api.every_trace(gitRemoteUrl="git@github.com:acme/lib.git") == []


async def test_resending_another_form_of_the_stored_remote_changes_nothing(api: Api) -> None:
    """The canonical URL is what is compared: another spelling is no change (updatedAt
    stays)."""
    first = (await api.put("t1", trace())).body
    again = (await api.put("t1", trace(gitRemoteUrl="git@github.com:acme/app.git"))).body
    assert again == first


#: the layout of schema versions 1 and 2 (tracesd.server.db before schema 3)
V2_SCHEMA = (
    "CREATE TABLE traces ("
    " seq INTEGER PRIMARY KEY, external_id TEXT NOT NULL UNIQUE, agent_id TEXT NOT NULL,"
    " title TEXT, preview TEXT, timestamp INTEGER, project_path TEXT, visibility TEXT,"
    " git_remote_url TEXT, git_branch TEXT, git_ref TEXT,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    "CREATE INDEX traces_remote ON traces (git_remote_url)",
    "CREATE INDEX traces_remote_branch ON traces (git_remote_url, git_branch)",
    "CREATE INDEX traces_agent ON traces (agent_id)",
)


def old_database(path: Path, version: int, rows: list[tuple[Any, ...]], columns: str) -> None:
    """A server database of schema `version` (1 or 2) holding `rows`."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        for statement in V2_SCHEMA:
            conn.execute(statement)
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO traces ({columns}) VALUES ({marks})", rows)
        conn.execute(f"PRAGMA user_version = {version}")


@SQLITE_ONLY
async def test_a_version_1_database_gets_its_stored_remotes_canonical(
    tmp_path: Path, start_server: StartServer
) -> None:
    """A server database of schema 1 (URLs stored as sent) is migrated at open: every
    stored URL canonical, nothing else changed, and the filter finds the traces."""
    path = tmp_path / "v1.db"
    raw = {"scp": "git@github.com:acme/app.git", "https": "https://GitHub.com/acme/app.git/",
           "local": "/srv/git/app.git", "lib": "https://github.com/acme/lib"}  # fmt: skip
    columns = "external_id, agent_id, git_remote_url, created_at, updated_at"
    old_database(path, 1, [(k, "codex", v, 1, 2) for k, v in raw.items()], columns)
    before = server_rows(path)

    db = await SQLiteStorage.open(path, legacy_namespace=user_for(TOKEN).namespace_id)
    try:
        api = await start_server(on=db)
        found = await api.every_trace(gitRemoteUrl="ssh://git@github.com/acme/app")
        assert [t["externalId"] for t in found] == ["https", "scp"]
    finally:
        await db.close()

    after = server_rows(path)
    assert {k: r["git_remote_url"] for k, r in after.items()} == {
        "scp": REMOTE,
        "https": REMOTE,
        "local": "/srv/git/app.git",
        "lib": "https://github.com/acme/lib",
    }
    for key, row in after.items():
        kept = {name: row[name] for name in before[key]}
        assert {**kept, "git_remote_url": None} == {**before[key], "git_remote_url": None}, key
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@SQLITE_ONLY
async def test_a_version_2_database_keeps_every_trace_for_the_first_token_and_gains_messages(
    tmp_path: Path, start_server: StartServer
) -> None:
    """Schema 2 -> 3: every row kept (its seq, so listings keep their order, and every
    field), owned by the namespace named at open (`tracesd server`: the first token's), each
    with its own server id; another token sees none of them; messages can be stored."""
    path = tmp_path / "v2.db"
    columns = (
        "seq, external_id, agent_id, title, preview, timestamp, project_path, visibility,"
        " git_remote_url, git_branch, git_ref, created_at, updated_at"
    )
    rows = [
        (7, "old-a", "codex", "A", "pa", 5, "/p", "direct", REMOTE, "main", REF, 1, 2),
        (9, "old-b", "pi", None, None, None, None, None, None, None, None, 3, 4),
    ]
    old_database(path, 2, rows, columns)
    before = server_rows(path)

    db = await SQLiteStorage.open(path, legacy_namespace=user_for(TOKEN).namespace_id)
    try:
        api = await start_server((TOKEN, OTHER_TOKEN), on=db)
        listed = await api.every_trace()
        assert [t["externalId"] for t in listed] == ["old-b", "old-a"]
        a = (await api.get("old-a")).body
        assert a == {
            "externalId": "old-a", "agentId": "codex", "title": "A", "preview": "pa",
            "timestamp": 5, "projectPath": "/p", "visibility": "direct", "gitRemoteUrl": REMOTE,
            "gitBranch": "main", "gitRef": REF, **_stamps(a),
        }  # fmt: skip
        assert (a["createdAt"], a["updatedAt"], a["messageCount"]) == (1, 2, 0)
        assert a["namespace"]["id"] == user_for(TOKEN).namespace_id
        assert len({a["id"], (await api.get("old-b")).body["id"]}) == 2
        assert (await api.listing(token=OTHER_TOKEN)).body["traces"] == []
        assert (await api.get("old-a", token=OTHER_TOKEN)).status == 404
        answer = await api.call(
            "POST",
            "/v1/traces/old-a/messages/batch",
            "MessageBatchAnswer",
            json_body={"idScheme": "v2", "messages": [message("m1", 1)]},
        )
        assert answer.body == {"messages": 1}
        assert (await api.get("old-a")).body["messageCount"] == 1
    finally:
        await db.close()
    after = server_rows(path)
    for key, row in before.items():
        assert {name: after[key][name] for name in row} == row
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def message(external_id: str, order: int, **fields: Any) -> dict[str, Any]:
    """A message batch entry as the Traces CLI sends it, with one text part."""
    return {
        "externalId": external_id,
        "sourceKey": f"user:{external_id}",
        "role": "user",
        "textContent": f"text of {external_id}",
        "order": order,
        "timestamp": 1_795_165_800_000 + order,
        "parts": [
            {
                "externalId": f"{external_id}-p0",
                "sourceKey": "text:0",
                "type": "text",
                "content": {"text": f"text of {external_id}"},
            }
        ],
        **fields,
    }


def server_rows(path: Path) -> dict[str, dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        return {r["external_id"]: dict(r) for r in conn.execute("SELECT * FROM traces")}


# ----------------------------------------------------------------- the real command


def _command(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracesd", "server", *args],
        env=isolated_env(home, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_server_refuses_to_start_without_tokens(home: Path) -> None:
    """No TRACESD_SERVER_TOKENS and no --no-auth: exit 2, one line naming the variable."""
    result = _command(home, "--port", "0")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "TRACESD_SERVER_TOKENS" in result.stderr
    assert "--no-auth" in result.stderr
    assert not (home / ".local").exists()  # refused before creating anything


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_no_auth_on_a_non_loopback_host_refuses_to_start(home: Path, host: str) -> None:
    """--no-auth binds loopback only: any other --host is exit 2 with one clear line."""
    result = _command(home, "--no-auth", "--host", host, "--port", "0")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "loopback" in result.stderr
    assert repr(host) in result.stderr


def test_the_server_with_tokens_answers_and_stops_on_sigterm(
    home: Path, tmp_path: Path, servers: Callable[..., ServerProcess]
) -> None:
    """Tokens from the environment: it serves, logs no token, and SIGTERM stops it (0)."""
    env = isolated_env(home, TRACESD_SERVER_TOKENS=f" {TOKEN} ,{OTHER_TOKEN},")
    db = tmp_path / "data" / "api.db"
    server = servers(home, "--port", "0", "--db", str(db), env=env)
    port = server.wait_started()
    started = server.events("server.started")[0]
    assert (started["host"], started["auth"], started["db"]) == ("127.0.0.1", "on", str(db))

    async def talk() -> list[int]:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            statuses = []
            for token, external_id in (
                (TOKEN, "t1"),
                (OTHER_TOKEN, "t2"),
                (OTHER_TOKEN, "t1"),  # the first token's trace: not the second's to change
                ("wrong", "t1"),
            ):
                headers = {"Authorization": f"Bearer {token}"}
                path = f"/v1/traces/{external_id}"
                async with session.put(path, json=trace(), headers=headers) as r:
                    statuses.append(r.status)
                    assert (await r.json())["ok"] is (r.status == 200)
            return statuses

    assert asyncio.run(talk()) == [200, 200, 404, 401]
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert server.events("server.stopped")
    log = server.log_path.read_text()
    assert TOKEN not in log
    assert OTHER_TOKEN not in log
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_no_auth_serves_loopback_without_a_token_from_the_default_database(
    home: Path, servers: Callable[..., ServerProcess]
) -> None:
    """--no-auth on 127.0.0.1: requests need no token; the db is under XDG data home."""
    server = servers(home, "--no-auth", "--port", "0", env=isolated_env(home))
    port = server.wait_started()
    assert server.events("server.started")[0]["auth"] == "off"

    async def put() -> int:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/v1/traces/t1"
            async with session.put(url, json=trace()) as response:
                return response.status

    assert asyncio.run(put()) == 200
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(10) == 0
    assert (home / ".local" / "share" / "tracesd" / "server.db").is_file()


#: what the server adds to the fields it was sent
SERVER_FIELDS = (
    "id",
    "namespace",
    "createdBy",
    "userSlug",
    "agentCreator",
    "messageCount",
    "createdAt",
    "updatedAt",
)


def _stamps(detail: dict[str, Any]) -> dict[str, Any]:
    """The fields of `detail` the server set (its id, owner, count and times)."""
    return {name: detail[name] for name in SERVER_FIELDS}
