"""Cursor's SQLite stores, read for the `cursor` adapter (`cursor.Cursor`).

`Stores` reads the IDE's `globalStorage/state.vscdb` (one trace per `composerData:<id>` row of
`cursorDiskKV`, its messages inline or in the `bubbleId:<id>:<bubble>` rows) and the CLI's
`chats/<md5(cwd)>/<chatId>/store.db` (hex-encoded JSON `meta['0']`, JSON message blobs), and
looks one composer up by id for an agent transcript. An IDE composer's directory comes from
its `workspaceIdentifier`, else from `_Workspaces`: each `workspaceStorage/<id>`'s folder and
(Cursor 2) the composers its own `state.vscdb` lists, else from the `workspaceUris` its first
bubbles record (where the Traces CLI finds it too). A CLI chat's directory is resolved by
the adapter, from the md5 in its path.

Also here, as the transcripts share them: the message text helpers (`user_text`,
`record_text`, `first_text`) and `trace_meta`, which makes a TraceMeta of them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tracesd.capture.adapters import _sqlite, _vscode
from tracesd.capture.adapters._text import latest, preview, text_of, title, to_ms
from tracesd.errors import ParseError
from tracesd.models import TraceMeta
from tracesd.safeopen import NotRegular, check_store

AGENT_ID = "cursor"
IDE_DB, CLI_DB = "state.vscdb", "store.db"
#: a composer, chat or workspace id (also a safe path component)
ID_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]*$")
_USER_QUERY = re.compile(r"<user_query>(.*?)</user_query>", re.DOTALL)
# context Cursor puts before a prompt: <user_info>, <attached_files>, <system_reminder>, ...
_CONTEXT = re.compile(r"^\s*<([a-z]+(?:_[a-z]+)+|rules)>.*?</\1>\s*", re.DOTALL)
_MAX_BLOB = 1024 * 1024

# One json_extract with every path: SQLite parses a composer's JSON once for all of them
# (3.40 does not cache a parse between calls), and Python decodes only the short array.
_COMPOSERS = """SELECT substr(key, 14), length(v), json_extract(v, '$.createdAt',
  '$.lastUpdatedAt', '$.workspaceIdentifier.uri.fsPath', '$.workspaceIdentifier.uri.scheme',
  '$.workspaceIdentifier.id', '$.isDraft', '$.subagentInfo', '$.parentComposerId',
  '$.isBestOfNSubcomposer', '$.modelConfig.modelName')
FROM (SELECT key, CAST(value AS TEXT) AS v FROM cursorDiskKV WHERE {}) WHERE json_valid(v)"""
_ALL = "key >= 'composerData:' AND key < 'composerData;'"  # the key index, not a LIKE scan
_MESSAGES = """SELECT json_extract(m.value, '$.type'), json_extract(m.value, '$.bubbleId'),
  json_extract(m.value, '$.text')
FROM (SELECT CAST(value AS TEXT) AS v FROM cursorDiskKV WHERE key = ?) AS k, json_each(k.v, ?) AS m
WHERE json_valid(k.v) AND m.type = 'object'"""
_BUBBLE = """SELECT json_extract(v, '$.text')
FROM (SELECT CAST(value AS TEXT) AS v FROM cursorDiskKV WHERE key = ?) WHERE json_valid(v)"""
# The folder a composer without a workspace names in its first bubbles' `workspaceUris`
# (as the Traces CLI finds it: the first 8 bubbles, in order)
_URIS = """SELECT json_extract(CAST(b.value AS TEXT), '$.workspaceUris')
FROM (SELECT CAST(value AS TEXT) AS v FROM cursorDiskKV WHERE key = ?) AS k,
  json_each(k.v, '$.fullConversationHeadersOnly') AS m
JOIN cursorDiskKV AS b ON b.key = ? || json_extract(m.value, '$.bubbleId')
WHERE json_valid(k.v) AND m.type = 'object' AND m.key < 8 AND json_valid(CAST(b.value AS TEXT))
ORDER BY m.key"""
_BLOBS = """SELECT data FROM blobs WHERE hex(substr(data, 1, 1)) = '7B' AND length(data) <= ?
ORDER BY rowid {} LIMIT 200"""

Texts = tuple[str | None, str | None]  # (first prompt, latest message)
Times = tuple[int | None, int | None]  # (created, last activity), ms


# one row of _COMPOSERS
_Composer = namedtuple(
    "_Composer", "id created updated size fs_path scheme workspace draft sub model"
)


def _composer_row(row: tuple[Any, int, str]) -> _Composer:
    cid, size, extracted = row
    created, updated, fs_path, scheme, workspace, draft, sub, parent, best_of, model = json.loads(
        extracted
    )
    is_sub = sub is not None or parent is not None or bool(best_of)
    return _Composer(
        cid,
        created,
        updated or created,
        size,
        fs_path,
        scheme,
        workspace,
        draft or 0,
        is_sub,
        _model(model),
    )


class Stores:
    """The IDE and CLI stores. Each read goes through the adapter's `_sqlite.Sessions`, one
    for all of them: a composer an agent transcript looked up is not read again by its
    store's own parse, nor the reverse."""

    def __init__(self, ide_dbs: tuple[str, ...]) -> None:
        self._ide_dbs = ide_dbs  # where a transcript looks its composer up, in order
        self._workspaces = _Workspaces()
        self._uri_dirs: dict[tuple[str, str], tuple[tuple[Any, int], str | None]] = {}

    # -- IDE ---------------------------------------------------------------------------

    def parse_ide(self, database: str, sessions: _sqlite.Sessions) -> list[TraceMeta]:
        with _store(database) as conn:
            rows = {
                c.id: c
                for c in map(_composer_row, conn.execute(_COMPOSERS.format(_ALL)))
                if isinstance(c.id, str) and not (c.draft or c.sub)
            }
            dirs = self._ide_dirs(conn, database, rows.values())
            # the stamp holds the directory too: a workspace mapping learnt later re-reads it
            stamps = {cid: (c.updated, c.size, dirs[cid]) for cid, c in rows.items()}

            def read(ids: list[str]) -> dict[str, TraceMeta | None]:
                return {cid: _composer(conn, rows[cid], dirs[cid], database) for cid in ids}

            return sessions.refresh(database, stamps, read)

    def _ide_dirs(
        self, conn: sqlite3.Connection, database: str, rows: Iterable[_Composer]
    ) -> dict[str, str | None]:
        storage = os.path.join(os.path.dirname(os.path.dirname(database)), "workspaceStorage")
        listed: dict[str, str] | None = None
        out: dict[str, str | None] = {}
        for c in rows:
            if isinstance(c.fs_path, str) and c.fs_path:
                out[c.id] = c.fs_path if c.scheme in (None, "file") else None
                continue
            found = None
            if isinstance(c.workspace, str) and ID_PATTERN.match(c.workspace):
                found = self._workspaces.read(os.path.join(storage, c.workspace))[0]
            if found is None:
                listed = self._workspaces.listing(storage) if listed is None else listed
                found = listed.get(c.id)
            out[c.id] = found or self._bubble_dir(conn, database, c)
        return out

    def _bubble_dir(self, conn: sqlite3.Connection, database: str, c: _Composer) -> str | None:
        """The first local folder in the composer's first bubbles' `workspaceUris`, read
        again only when the composer changed."""
        stamp = (c.updated, c.size)
        cached = self._uri_dirs.get((database, c.id))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        rows = conn.execute(_URIS, ("composerData:" + c.id, f"bubbleId:{c.id}:"))
        found = next((f for (uris,) in rows if (f := _first_folder(uris))), None)
        self._uri_dirs[(database, c.id)] = (stamp, found)
        return found

    def lookup_composer(
        self, cid: str, sessions: _sqlite.Sessions
    ) -> tuple[bool, TraceMeta | None, str | None]:
        """One composer, by key: (is a sub-composer, its trace, its directory)."""
        for database in self._ide_dbs:
            if not os.path.isfile(database):
                continue
            try:
                with _store(database) as conn:
                    where = _COMPOSERS.format("key = ?")
                    row = conn.execute(where, ("composerData:" + cid,)).fetchone()
                    if row is None:
                        continue
                    c = _composer_row(row)
                    if c.sub:
                        return True, None, None
                    directory = self._ide_dirs(conn, database, [c])[cid]
                    if c.draft:
                        return False, None, directory
                    # the same stamp as the store's own parse: whichever runs first reads it
                    stamp = (c.updated, c.size, directory)
                    read = functools.partial(_composer, conn, c, directory, database)
                    meta = sessions.lookup(database, cid, stamp, read)
                    return False, meta, directory
            except ParseError as exc:
                if exc.reason == "locked":
                    raise  # retried later: a transcript-only answer would disagree with it
        return False, None, None

    # -- CLI ---------------------------------------------------------------------------

    def parse_cli(
        self,
        database: str,
        sessions: _sqlite.Sessions,
        project_directory: Callable[[str], str | None],
    ) -> list[TraceMeta]:
        """A CLI chat; `project_directory`: its project (md5 of its cwd) -> the cwd."""
        with _store(database) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = '0'").fetchone()
            if row is None:
                return []  # created, not written yet
            head = _head_record(row[0], database)
            if head.get("subagentInfo") or head.get("parentAgentId"):
                return []
            chat = head.get("agentId")
            if not isinstance(chat, str) or not ID_PATTERN.match(chat):
                chat = os.path.basename(os.path.dirname(database))
            top = conn.execute("SELECT max(rowid) FROM blobs").fetchone()[0]
            project = os.path.basename(os.path.dirname(os.path.dirname(database)))
            directory = project_directory(project)

            def read(ids: list[str]) -> dict[str, TraceMeta | None]:
                return {chat: _chat(conn, database, chat, head, directory)}

            stamps = {chat: (row[0], top, directory)}  # a project learnt later re-reads it
            return sessions.refresh(database, stamps, read)


def _chat(
    conn: sqlite3.Connection, database: str, chat: str, head: dict[str, Any], cwd: str | None
) -> TraceMeta | None:
    oldest = conn.execute(_BLOBS.format("ASC"), (_MAX_BLOB,))
    prompt = first_text(_blob_text(r[0], user_only=True) for r in oldest)
    if prompt is None:
        return None  # no user message yet
    newest = conn.execute(_BLOBS.format("DESC"), (_MAX_BLOB,))
    last = first_text(_blob_text(r[0], user_only=False) for r in newest)
    mtime = max(_mtime_ns(database), _mtime_ns(database + "-wal")) // 1_000_000
    created = to_ms(head.get("createdAt")) or mtime
    times = (created, latest(mtime, created))
    return trace_meta(chat, database, cwd, (prompt, last), times, _model(head.get("lastUsedModel")))


# -- reading -----------------------------------------------------------------------------


@contextlib.contextmanager
def _store(database: str) -> Iterator[sqlite3.Connection]:
    try:
        size = check_store(database).st_size  # a FIFO has no size: refused, not "empty"
    except NotRegular as exc:
        raise ParseError("not_a_file", str(exc)) from None
    except OSError:
        size = None  # vanished: connect() says so
    if size == 0:
        raise ParseError("empty", f"empty database (being created?): {database!r}")
    with _sqlite.connect(database) as conn:
        yield conn


def _composer(
    conn: sqlite3.Connection, c: _Composer, directory: str | None, database: str
) -> TraceMeta | None:
    key = "composerData:" + c.id
    messages = conn.execute(_MESSAGES, (key, "$.fullConversationHeadersOnly")).fetchall()
    if not messages:  # composers before `_v` 3 embed their messages
        messages = conn.execute(_MESSAGES, (key, "$.conversation")).fetchall()

    def text(kind: Any, bubble: Any, inline: Any) -> str | None:
        if not (isinstance(inline, str) and inline.strip()) and isinstance(bubble, str):
            found = conn.execute(_BUBBLE, (f"bubbleId:{c.id}:{bubble}",)).fetchone()
            inline = found[0] if found else None
        if not isinstance(inline, str):
            return None
        return user_text(inline) if kind == 1 else inline.strip() or None

    users = [m for m in messages if m[0] == 1]
    if not users:
        return None  # a chat nobody has typed into yet
    prompt = first_text(text(*m) for m in users[:5])
    last = first_text(text(*m) for m in reversed(messages[-8:]))
    created = to_ms(c.created) or to_ms(c.updated)
    times = (created, latest(to_ms(c.updated), created))
    return trace_meta(c.id, database, directory, (prompt, last), times, c.model)


def _first_folder(uris: Any) -> str | None:
    """The first local folder of a bubble's `workspaceUris` (a JSON array of URIs)."""
    try:
        listed = json.loads(uris) if isinstance(uris, str) else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(listed, list):
        return None
    return next((p for u in listed if isinstance(u, str) and (p := _vscode.file_path(u))), None)


def _blob_text(data: Any, *, user_only: bool) -> str | None:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or (user_only and message.get("role") != "user"):
        return None
    return record_text(message)


def _head_record(value: Any, database: str) -> dict[str, Any]:
    """`meta['0']`: JSON, hex-encoded (plain JSON is accepted too)."""
    raw = _sqlite.text(value) or ""
    try:
        head = json.loads(raw if raw.lstrip().startswith("{") else bytes.fromhex(raw))
    except (ValueError, RecursionError):
        head = None
    if not isinstance(head, dict):
        raise ParseError("malformed", f"chat store without a readable head record: {database!r}")
    return head


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


# -- message text, shared with the agent transcripts --------------------------------------


def record_text(record: dict[str, Any]) -> str | None:
    message = record.get("message")
    text = text_of(message.get("content") if isinstance(message, dict) else record.get("content"))
    if text is None or record.get("role") not in ("user", "assistant"):
        return None
    return user_text(text) if record["role"] == "user" else text.strip() or None


def user_text(text: str) -> str | None:
    """A prompt without the context Cursor wraps around it."""
    if found := _USER_QUERY.search(text):
        return found.group(1).strip() or None
    while context := _CONTEXT.match(text):
        text = text[context.end() :]
    return text.strip() or None


def trace_meta(
    trace_id: str,
    source: str,
    cwd: str | None,
    texts: Texts,
    times: Times,
    model: str | None = None,
) -> TraceMeta:
    (prompt, last), (created, updated) = texts, times
    heading = title(prompt), preview(last or prompt)
    return TraceMeta(AGENT_ID, trace_id, source, cwd, *heading, updated, created, model=model)


def _model(value: Any) -> str | None:
    """A composer's `modelConfig.modelName` (what the Traces CLI sends) or a CLI chat's
    `lastUsedModel`."""
    return value if isinstance(value, str) and value else None


def first_text(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


# -- directories -------------------------------------------------------------------------


class _Workspaces:
    """Per workspace directory, its folder and (Cursor 2) the composers its `state.vscdb`
    lists; read again only when one of its files changed."""

    _FILES = ("workspace.json", IDE_DB, IDE_DB + "-wal")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[tuple[int, ...], str | None, tuple[str, ...]]] = {}

    def listing(self, storage: str) -> dict[str, str]:
        """composer id -> folder over every workspace (the first to list an id wins)."""
        out: dict[str, str] = {}
        with contextlib.suppress(OSError), os.scandir(storage) as entries:
            for workspace in sorted(e.path for e in entries if e.is_dir()):
                folder, ids = self.read(workspace)
                for cid in ids:
                    if folder is not None:
                        out.setdefault(cid, folder)
        return out

    def read(self, workspace: str) -> tuple[str | None, tuple[str, ...]]:
        stamp = tuple(_mtime_ns(os.path.join(workspace, name)) for name in self._FILES)
        with self._lock:
            cached = self._seen.get(workspace)
            if cached is None or cached[0] != stamp:
                ids = _listed(os.path.join(workspace, IDE_DB))
                # a store that cannot be read now (locked) is not remembered as listing none
                cached = (
                    stamp if ids is not None else (),
                    _vscode.workspace_folder(workspace),
                    ids or (),
                )
                self._seen[workspace] = cached
            return cached[1], cached[2]


def _listed(database: str) -> tuple[str, ...] | None:
    """Composer ids a workspace store lists; None when it is locked (try again later)."""
    if not os.path.isfile(database):
        return ()
    try:
        with _store(database) as conn:
            query = "SELECT value FROM ItemTable WHERE key = 'composer.composerData'"
            row = conn.execute(query).fetchone()
    except ParseError as exc:
        return None if exc.reason == "locked" else ()
    try:
        data = json.loads(_sqlite.text(row[0]) or "{}") if row else {}
    except (ValueError, RecursionError):
        return ()
    if not isinstance(data, dict):
        return ()
    heads = data.get("allComposers")
    ids = [h.get("composerId") for h in heads if isinstance(h, dict)] if heads else []
    for key in ("selectedComposerIds", "lastFocusedComposerIds"):
        more = data.get(key)
        ids += more if isinstance(more, list) else []
    return tuple(dict.fromkeys(i for i in ids if isinstance(i, str)))
