"""Cursor: three stores, one trace per composer (chat) id.

* IDE: `<Cursor User>/globalStorage/state.vscdb` (+ `-wal`), a VS Code key-value store;
  `cursorDiskKV` row `composerData:<id>` is one chat, `bubbleId:<id>:<bubble>` one message.
  cwd: `workspaceIdentifier.uri.fsPath` (Cursor >= 3.12), else the `workspace.json` folder of
  `workspaceStorage/<workspaceIdentifier.id>`, else (Cursor 2) of the workspace whose
  `composer.composerData` lists the id. Only globalStorage itself is watched, not its tree.
* Agent transcripts: `~/.cursor/projects/<slug>/agent-transcripts/<id>.jsonl` (or `.txt`,
  or `<id>/<id>.jsonl`). No cwd, no times: the IDE store's composer supplies them when it
  has one (so both sources agree), else the lossy slug is matched against candidate
  directories and the file system, and the times are the file's mtime.
* CLI (`cursor-agent`): `~/.cursor/chats/<md5(cwd)>/<chatId>/store.db`: hex-encoded JSON
  `meta['0']`, JSON message blobs; cwd by hashing candidate directories.

Skipped: drafts and chats without a user message, subagent and best-of-N sub-composers,
`subagents/` transcripts, a `.txt` transcript next to its `.jsonl`, temp files, and the
directories of remote (`vscode-remote://`) workspaces, which are not on this machine.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from tracesd.adapters import _roots, _sqlite, _vscode
from tracesd.adapters._files import Records, SessionFile, tail_records
from tracesd.adapters._text import latest, preview, text_of, title, to_ms
from tracesd.config import Config
from tracesd.errors import ParseError
from tracesd.models import TraceMeta

AGENT_ID = "cursor"
_IDE_DB, _CLI_DB, _TRANSCRIPTS = "state.vscdb", "store.db", "agent-transcripts"
_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]*$")
_NOT_SLUG = re.compile(r"[^0-9A-Za-z]+")
_USER_QUERY = re.compile(r"<user_query>(.*?)</user_query>", re.DOTALL)
# context Cursor puts before a prompt: <user_info>, <attached_files>, <system_reminder>, ...
_CONTEXT = re.compile(r"^\s*<([a-z]+(?:_[a-z]+)+|rules)>.*?</\1>\s*", re.DOTALL)
_NOT_PROSE = ("[Tool call]", "[Tool result]", "[Thinking]")
_TXT_HEAD = _MAX_BLOB = 1024 * 1024
_RETRY_S = 30.0  # how long a failed directory lookup stands before it is tried again

# One json_extract with every path: SQLite parses a composer's JSON once for all of them
# (3.40 does not cache a parse between calls), and Python decodes only the short array.
_COMPOSERS = """SELECT substr(key, 14), length(v), json_extract(v, '$.createdAt',
  '$.lastUpdatedAt', '$.workspaceIdentifier.uri.fsPath', '$.workspaceIdentifier.uri.scheme',
  '$.workspaceIdentifier.id', '$.isDraft', '$.subagentInfo', '$.parentComposerId',
  '$.isBestOfNSubcomposer')
FROM (SELECT key, CAST(value AS TEXT) AS v FROM cursorDiskKV WHERE {}) WHERE json_valid(v)"""
_ALL = "key >= 'composerData:' AND key < 'composerData;'"  # the key index, not a LIKE scan
_MESSAGES = """SELECT json_extract(m.value, '$.type'), json_extract(m.value, '$.bubbleId'),
  json_extract(m.value, '$.text')
FROM (SELECT CAST(value AS TEXT) AS v FROM cursorDiskKV WHERE key = ?) AS k, json_each(k.v, ?) AS m
WHERE json_valid(k.v) AND m.type = 'object'"""
_BUBBLE = """SELECT json_extract(v, '$.text')
FROM (SELECT CAST(value AS TEXT) AS v FROM cursorDiskKV WHERE key = ?) WHERE json_valid(v)"""
_BLOBS = """SELECT data FROM blobs WHERE hex(substr(data, 1, 1)) = '7B' AND length(data) <= ?
ORDER BY rowid {} LIMIT 200"""

Texts = tuple[str | None, str | None]  # (first prompt, latest message)
Times = tuple[int | None, int | None]  # (created, last activity), ms


# one row of _COMPOSERS
_Composer = namedtuple("_Composer", "id created updated size fs_path scheme workspace draft sub")


def _composer_row(row: tuple[Any, int, str]) -> _Composer:
    cid, size, extracted = row
    created, updated, fs_path, scheme, workspace, draft, sub, parent, best_of = json.loads(
        extracted
    )
    is_sub = sub is not None or parent is not None or bool(best_of)
    return _Composer(
        cid, created, updated or created, size, fs_path, scheme, workspace, draft or 0, is_sub
    )


class Cursor:
    agent_id = AGENT_ID

    def __init__(self, config: Config, hints: object = None) -> None:
        users = _vscode.user_dirs(config, ["Cursor"])
        dots = [config.home / ".cursor"]
        configured = config.env_path("CURSOR_CONFIG_DIR")  # the CLI's; chats may follow it
        if configured is not None and configured != dots[0]:
            dots.append(configured)
        ide_roots = [str(u / "globalStorage") for u in users]
        defaults = [*ide_roots, *(str(d / sub) for d in dots for sub in ("projects", "chats"))]
        self._roots = _roots.resolve(config, AGENT_ID, defaults)
        # transcripts look their composer up in the default IDE stores, and in one an
        # `[agents.roots]` override points at
        overrides = [r for r in self._roots if r not in defaults]
        self._ide_dbs = tuple(os.path.join(r, _IDE_DB) for r in [*overrides, *ide_roots])
        known: Callable[[], Iterable[str]] = getattr(hints, "known_directories", lambda: ())
        storages = [str(u / "workspaceStorage") for u in users]
        self._directories = _Directories(str(config.home), known, storages)
        self._workspaces = _Workspaces()
        self._sessions = _sqlite.Sessions()

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        name = os.path.basename(root)
        return 1 if name == "globalStorage" else 3 if name == "chats" else 4

    def matches(self, rel: str) -> bool:
        parts = rel.split("/")
        name = parts[-1]
        if len(parts) == 1:
            return name in (_IDE_DB, f"{_IDE_DB}-wal", f"{_IDE_DB}-journal")
        if len(parts) == 3 and name in (_CLI_DB, f"{_CLI_DB}-wal", f"{_CLI_DB}-journal"):
            return bool(_ID.match(parts[0]) and _ID.match(parts[1]))
        if len(parts) not in (3, 4) or parts[1] != _TRANSCRIPTS:
            return False
        stem, _, ext = name.partition(".")  # a temp file has another dot, or a leading one
        nested_ok = len(parts) == 3 or stem == parts[2]  # <id>/<id>.jsonl, not subagents/
        return ext in ("jsonl", "txt") and bool(_ID.match(stem)) and nested_ok

    def parse(self, path: str) -> list[TraceMeta]:
        database = _sqlite.database_of(path)
        name = os.path.basename(database)
        if name == _IDE_DB:
            return self._parse_ide(database)
        if name == _CLI_DB:
            return self._parse_cli(database)
        return self._parse_transcript(path)

    # -- IDE ---------------------------------------------------------------------------

    def _parse_ide(self, database: str) -> list[TraceMeta]:
        with _store(database) as conn:
            rows = {
                c.id: c
                for c in map(_composer_row, conn.execute(_COMPOSERS.format(_ALL)))
                if isinstance(c.id, str) and not (c.draft or c.sub)
            }
            dirs = self._ide_dirs(database, rows.values())
            # the stamp holds the directory too: a workspace mapping learnt later re-reads it
            stamps = {cid: (c.updated, c.size, dirs[cid]) for cid, c in rows.items()}

            def read(ids: list[str]) -> dict[str, TraceMeta | None]:
                return {cid: _composer(conn, rows[cid], dirs[cid], database) for cid in ids}

            return self._sessions.refresh(database, stamps, read)

    def _ide_dirs(self, database: str, rows: Iterable[_Composer]) -> dict[str, str | None]:
        storage = os.path.join(os.path.dirname(os.path.dirname(database)), "workspaceStorage")
        listed: dict[str, str] | None = None
        out: dict[str, str | None] = {}
        for c in rows:
            if isinstance(c.fs_path, str) and c.fs_path:
                out[c.id] = c.fs_path if c.scheme in (None, "file") else None
                continue
            found = None
            if isinstance(c.workspace, str) and _ID.match(c.workspace):
                found = self._workspaces.read(os.path.join(storage, c.workspace))[0]
            if found is None:
                listed = self._workspaces.listing(storage) if listed is None else listed
                found = listed.get(c.id)
            out[c.id] = found
        return out

    def _ide_lookup(self, cid: str) -> tuple[bool, TraceMeta | None, str | None]:
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
                    directory = self._ide_dirs(database, [c])[cid]
                    if c.draft:
                        return False, None, directory
                    # the same stamp as the store's own parse: whichever runs first reads it
                    stamp = (c.updated, c.size, directory)
                    read = functools.partial(_composer, conn, c, directory, database)
                    meta = self._sessions.lookup(database, cid, stamp, read)
                    return False, meta, directory
            except ParseError as exc:
                if exc.reason == "locked":
                    raise  # retried later: a transcript-only answer would disagree with it
        return False, None, None

    # -- agent transcripts -------------------------------------------------------------

    def _parse_transcript(self, path: str) -> list[TraceMeta]:
        if path.endswith(".txt") and os.path.exists(path[: -len(".txt")] + ".jsonl"):
            return []  # the .jsonl beside it is the same session
        cid = os.path.basename(path).partition(".")[0]
        with SessionFile(path) as f:
            texts = _read_jsonl(f) if path.endswith(".jsonl") else _read_txt(f)
            mtime_ms = f.mtime_ns // 1_000_000
        sub, ide, directory = self._ide_lookup(cid)
        if sub:
            return []
        folder = os.path.dirname(path)
        if os.path.basename(folder) != _TRANSCRIPTS:
            folder = os.path.dirname(folder)  # <id>/<id>.jsonl
        slug = os.path.basename(os.path.dirname(folder))
        directory = directory or self._directories.by_slug(slug)
        if ide is not None:
            return [replace(ide, source_path=path, directory=ide.directory or directory)]
        if texts == (None, None):
            return []
        return [_meta(cid, path, directory, texts, (mtime_ms, mtime_ms))]

    # -- CLI ---------------------------------------------------------------------------

    def _parse_cli(self, database: str) -> list[TraceMeta]:
        with _store(database) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = '0'").fetchone()
            if row is None:
                return []  # created, not written yet
            head = _head_record(row[0], database)
            if head.get("subagentInfo") or head.get("parentAgentId"):
                return []
            chat = head.get("agentId")
            if not isinstance(chat, str) or not _ID.match(chat):
                chat = os.path.basename(os.path.dirname(database))
            top = conn.execute("SELECT max(rowid) FROM blobs").fetchone()[0]
            project = os.path.basename(os.path.dirname(os.path.dirname(database)))
            directory = self._directories.by_md5(project)

            def read(ids: list[str]) -> dict[str, TraceMeta | None]:
                return {chat: _chat(conn, database, chat, head, directory)}

            stamps = {chat: (row[0], top, directory)}  # a project learnt later re-reads it
            return self._sessions.refresh(database, stamps, read)


def _chat(
    conn: sqlite3.Connection, database: str, chat: str, head: dict[str, Any], cwd: str | None
) -> TraceMeta | None:
    oldest = conn.execute(_BLOBS.format("ASC"), (_MAX_BLOB,))
    prompt = _first(_blob_text(r[0], user_only=True) for r in oldest)
    if prompt is None:
        return None  # no user message yet
    newest = conn.execute(_BLOBS.format("DESC"), (_MAX_BLOB,))
    last = _first(_blob_text(r[0], user_only=False) for r in newest)
    mtime = max(_mtime_ns(database), _mtime_ns(database + "-wal")) // 1_000_000
    created = to_ms(head.get("createdAt")) or mtime
    return _meta(chat, database, cwd, (prompt, last), (created, latest(mtime, created)))


# -- reading -----------------------------------------------------------------------------


@contextlib.contextmanager
def _store(database: str) -> Iterator[sqlite3.Connection]:
    with contextlib.suppress(OSError):  # vanished: connect() says so
        if os.stat(database).st_size == 0:
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
        return _user_text(inline) if kind == 1 else inline.strip() or None

    users = [m for m in messages if m[0] == 1]
    if not users:
        return None  # a chat nobody has typed into yet
    prompt = _first(text(*m) for m in users[:5])
    last = _first(text(*m) for m in reversed(messages[-8:]))
    created = to_ms(c.created) or to_ms(c.updated)
    times = (created, latest(to_ms(c.updated), created))
    return _meta(c.id, database, directory, (prompt, last), times)


def _read_jsonl(f: SessionFile) -> Texts:
    records = Records(f)
    prompt: str | None = None
    for record in records:
        if record.get("role") == "user" and (prompt := _record_text(record)):
            break
    if not records.count:
        records.explain_none()
        raise ParseError("incomplete", f"no complete transcript line yet: {f.path!r}")
    return prompt, _first(_record_text(r) for r in tail_records(f))


def _read_txt(f: SessionFile) -> Texts:
    """Plain-text transcripts: `user:` and `assistant:` lines start the messages."""
    if f.size == 0:
        raise ParseError("empty", f"empty file: {f.path!r}")
    head = f.read_document(_TXT_HEAD)
    if b"\x00" in head:
        raise ParseError("binary", f"binary content, not a transcript: {f.path!r}")
    blocks = _blocks(head)
    if not blocks:
        torn = len(head) == f.size and not head.endswith(b"\n")
        raise ParseError("incomplete" if torn else "malformed", f"no messages: {f.path!r}")
    prompt = _first(_user_text(t) for role, t in blocks if role == "user")
    tail = blocks if len(head) == f.size else _blocks(f.read_tail())
    return prompt, _first(_prose(role, t) for role, t in reversed(tail))


def _blocks(data: bytes) -> list[tuple[str, str]]:
    blocks: list[tuple[str, list[str]]] = []
    for line in data.decode("utf-8", "replace").split("\n"):
        if line.strip() in ("user:", "assistant:"):
            blocks.append((line.strip()[:-1], []))
        elif blocks:
            blocks[-1][1].append(line)
    return [(role, "\n".join(lines)) for role, lines in blocks]


def _prose(role: str, text: str) -> str | None:
    """A message's text without tool calls, tool results and thinking (indented bodies)."""
    if role == "user":
        return _user_text(text)
    kept = (ln for ln in text.split("\n") if ln[:1] not in (" ", "\t"))
    return "\n".join(ln for ln in kept if not ln.startswith(_NOT_PROSE)).strip() or None


def _record_text(record: dict[str, Any]) -> str | None:
    message = record.get("message")
    text = text_of(message.get("content") if isinstance(message, dict) else record.get("content"))
    if text is None or record.get("role") not in ("user", "assistant"):
        return None
    return _user_text(text) if record["role"] == "user" else text.strip() or None


def _blob_text(data: Any, *, user_only: bool) -> str | None:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or (user_only and message.get("role") != "user"):
        return None
    return _record_text(message)


def _user_text(text: str) -> str | None:
    """A prompt without the context Cursor wraps around it."""
    if found := _USER_QUERY.search(text):
        return found.group(1).strip() or None
    while context := _CONTEXT.match(text):
        text = text[context.end() :]
    return text.strip() or None


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


def _meta(trace_id: str, source: str, cwd: str | None, texts: Texts, times: Times) -> TraceMeta:
    (prompt, last), (created, updated) = texts, times
    heading = title(prompt), preview(last or prompt)
    return TraceMeta(AGENT_ID, trace_id, source, cwd, *heading, updated, created)


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _read_json(path: str, limit: int = 64 * 1024) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(limit))
    except (OSError, ValueError, RecursionError):
        return None


# -- directories -------------------------------------------------------------------------


class _Workspaces:
    """Per workspace directory, its folder and (Cursor 2) the composers its `state.vscdb`
    lists; read again only when one of its files changed."""

    _FILES = ("workspace.json", _IDE_DB, _IDE_DB + "-wal")

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
                ids = _listed(os.path.join(workspace, _IDE_DB))
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


class _Directories:
    """Lossy project names -> directories: md5(cwd) for CLI chats, the slug (non-alphanumeric
    runs as dashes) for transcripts. Candidates: directories other traces were made in and
    their siblings, Cursor's workspace folders, the home directory two levels down; rebuilt
    on a miss at most every _RETRY_S. A slug still unknown is looked for from `/` down."""

    def __init__(self, home: str, known: Callable[[], Iterable[str]], storages: list[str]):
        self._home, self._known, self._storages = home, known, storages
        self._map: dict[str, str] = {}
        self._built_at = float("-inf")
        self._probed: dict[str, tuple[float, str | None]] = {}

    def by_md5(self, digest: str) -> str | None:
        return self._lookup(digest)

    def by_slug(self, slug: str) -> str | None:
        want = _slugged(slug)
        if not want:
            return None
        found = self._lookup("/" + want)
        checked, probed = self._probed.get(want, (float("-inf"), None))
        if found is None and probed is None and time.monotonic() - checked > _RETRY_S:
            probed = _probe(want)
            self._probed[want] = (time.monotonic(), probed)
        return found or probed

    def _lookup(self, key: str) -> str | None:
        found = self._map.get(key)
        if found is None and time.monotonic() - self._built_at > _RETRY_S:
            keys = (_md5, lambda c: "/" + _slugged(c))
            self._map = {key_of(c): c for c in self._candidates() for key_of in keys}
            self._built_at = time.monotonic()
            found = self._map.get(key)
        return found

    def _candidates(self, budget: int = 20_000) -> set[str]:
        seeds = set(self._known())
        for storage in self._storages:
            seeds.update(f for w in _subdirs(storage, budget) if (f := _vscode.workspace_folder(w)))
        candidates = set(seeds)
        for parent in {os.path.dirname(s) for s in seeds if s}:
            candidates.update(_subdirs(parent, budget))
        for child in _subdirs(self._home, budget):
            candidates.update([child, *_subdirs(child, budget)])
            if len(candidates) > budget:
                break
        return candidates


def _slugged(path: str) -> str:
    return _NOT_SLUG.sub("-", path).strip("-")


def _probe(want: str, budget: int = 64) -> str | None:
    """The directory whose path slugs to `want`, walking down from `/` through the
    directories whose slugs begin it (at most `budget` listings)."""
    stack = [("/", "")]
    while stack and budget > 0:
        base, done = stack.pop()
        budget -= 1
        with contextlib.suppress(OSError), os.scandir(base) as entries:
            for name in sorted((e.name for e in entries if e.is_dir()), reverse=True):
                part = _slugged(name)
                slug = f"{done}-{part}" if done else part
                if part and slug == want:
                    return os.path.join(base, name)
                if part and want.startswith(slug + "-"):
                    stack.append((os.path.join(base, name), slug))
    return None


def _subdirs(path: str, limit: int) -> list[str]:
    out: list[str] = []
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        out = [e.path for e in entries if e.is_dir(follow_symlinks=False)][:limit]
    return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()
