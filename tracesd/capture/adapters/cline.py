"""Cline (`cline`): classic VS Code tasks and the SDK-era `~/.cline/data` sessions.

Classic (extension <= 3.x, and every task made before the SDK migration): each editor's
`<User>/globalStorage/saoudrizwan.claude-dev/` (VS Code, Insiders, VSCodium, Cursor,
Windsurf; the old standalone CLI used the data dir) holds `tasks/<taskId>/ui_messages.json`
(rewritten whole via `ui_messages.json.tmp.<ms>.<rand>.json` + rename) and
`state/taskHistory.json`, one array for all tasks with the only clean cwd
(`cwdOnTaskInitialization`). Both are sources: a task dir can appear before its entry, and
the history yields every task it lists, so a trace gets its directory once the entry lands.
Without an entry, the cwd is `# Current Working Directory (<path>) Files` in the first turn
of `api_conversation_history.json`.

SDK era (>= 4.x, CLI, JetBrains): the data dir (`CLINE_DIR`/data, `CLINE_DATA_DIR`;
`CLINE_SESSION_DATA_DIR`, `CLINE_DB_DATA_DIR`) holds `sessions/<id>/<id>.json` manifests,
their `<id>.messages.json` (next to them, never via the absolute `messages_path` stored),
and `db/sessions.db` (table `sessions`; read-only, only rows whose `updated_at` moved).

Skipped: temp and side files, a legacy `claude_messages.json` beside its `ui_messages.json`,
sub-agent and teammate sessions (`is_subagent`, `parent_session_id`, ids with `__`: they
belong to their root session), and `metadata.title` (the title is the first prompt).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from tracesd.capture.adapters import _roots, _sqlite, _vscode
from tracesd.capture.adapters._cline_messages import Chat, loads, objects, read_messages, ui_text
from tracesd.capture.adapters._docs import Document
from tracesd.capture.adapters._files import SessionFile
from tracesd.capture.adapters._text import latest, session_meta, title, to_ms
from tracesd.errors import ParseError
from tracesd.models import Parsed, TraceMeta

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

AGENT_ID = "cline"

_EXTENSION = "saoudrizwan.claude-dev"
_EDITORS = ("Code", "Code - Insiders", "VSCodium", "Cursor", "Windsurf")
_UI, _LEGACY_UI = "ui_messages.json", "claude_messages.json"
_HISTORY, _API, _DB = "taskHistory.json", "api_conversation_history.json", "sessions.db"
#: root kind -> how deep its session files are
_DEPTH = {"tasks": 2, "state": 1, "sessions": 2, "db": 1}

_RESUME_ASKS = ("resume_task", "resume_completed_task")
_NOT_SUBAGENT = {
    "is_subagent": "COALESCE(is_subagent, 0) = 0",
    "parent_session_id": "COALESCE(parent_session_id, '') = ''",
}
_CWD_LINE = re.compile(r"# Current Working Directory \((.+?)\) Files")
#: how much of api_conversation_history.json is read to find the first turn's cwd
_API_HEAD = 512 * 1024
_API_CWDS_MAX = 10_000
_ROW_BATCH = 500
_ROW_COLUMNS = ("session_id", "started_at", "ended_at", "cwd", "workspace_root", "prompt")


class _Entry(NamedTuple):  # one taskHistory.json item
    cwd: str | None
    task: str | None
    ts: int | None


class Cline:
    agent_id = AGENT_ID
    env_vars = (
        "CLINE_DIR",
        "CLINE_DATA_DIR",
        "CLINE_SESSION_DATA_DIR",
        "CLINE_DB_DATA_DIR",
        *_vscode.ENV_VARS,
    )

    def __init__(self, config: Config) -> None:
        override = _roots.resolve(config, AGENT_ID, [])
        if override:  # one directory laid out like a Cline data dir (or a globalStorage dir)
            data = override[0]
            storages = [data]
            sessions, db = os.path.join(data, "sessions"), os.path.join(data, "db")
        else:
            cline_dir = _env_dir(config, "CLINE_DIR") or str(config.home / ".cline")
            data = _env_dir(config, "CLINE_DATA_DIR") or os.path.join(cline_dir, "data")
            sessions = _env_dir(config, "CLINE_SESSION_DATA_DIR") or os.path.join(data, "sessions")
            db = _env_dir(config, "CLINE_DB_DATA_DIR") or os.path.join(data, "db")
            storages = [
                os.path.join(u, "globalStorage", _EXTENSION)
                for u in _vscode.user_dirs(config, _EDITORS)
            ]
            storages.append(data)
        kinds = [(os.path.join(s, kind), kind) for s in storages for kind in ("tasks", "state")]
        kinds += [(sessions, "sessions"), (db, "db")]
        #: root -> its kind (the key of _DEPTH)
        self._kinds = {os.path.normpath(root): kind for root, kind in kinds}
        self._sessions_dir = os.path.normpath(sessions)
        self._lock = threading.Lock()
        #: taskHistory.json path -> ((size, mtime_ns), entries by task id)
        self._histories: dict[str, tuple[tuple[int, int], dict[str, _Entry]]] = {}
        #: task dir -> cwd found in its api_conversation_history.json (it never changes)
        self._api_cwds: dict[str, str] = {}
        self._memo = _sqlite.Sessions()

    def roots(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def depth(self, root: str) -> int:
        return _DEPTH[self._kinds.get(os.path.normpath(root), "tasks")]

    def matches(self, rel: str) -> bool:
        parts = rel.split("/")
        if len(parts) == 1:
            return parts[0] == _HISTORY or _sqlite.is_store(parts[0], _DB)
        if len(parts) != 2 or not parts[0]:
            return False
        folder, name = parts
        return name in (_UI, _LEGACY_UI, folder + ".json", folder + ".messages.json")

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        name = os.path.basename(path)
        if name in (_UI, _LEGACY_UI):
            return Parsed(self._parse_task(path))
        if name == _HISTORY:
            return Parsed(self._parse_history(path))
        if _sqlite.is_store(name, _DB):
            return Parsed(self._parse_db(path))
        if name.endswith(".json"):
            return Parsed(self._parse_sdk(path))
        return Parsed([])

    # -- classic ----------------------------------------------------------------------

    def _parse_task(self, path: str) -> list[TraceMeta]:
        task_dir = os.path.dirname(path)
        task_id = os.path.basename(task_dir)
        if os.path.basename(path) == _LEGACY_UI and os.path.exists(os.path.join(task_dir, _UI)):
            return []  # migrated: ui_messages.json is the transcript now
        with SessionFile(path) as f:
            doc = Document(f)
            mtime_ms = f.mtime_ns // 1_000_000
        if doc.partial:
            head = [m for m in doc.leading_items() if isinstance(m, dict)]
            tail = objects(doc.tail, "ts")
        else:
            messages = doc.require(list)
            head = tail = [m for m in messages if isinstance(m, dict)]
            if messages and not head:
                raise ParseError("malformed", f"no Cline messages in {path!r}")
        if not head:
            return []  # not even the task message yet
        task = next((m for m in head if m.get("say") == "task"), head[0])
        prompt = task.get("text") if isinstance(task.get("text"), str) else None
        # Cline's own "last activity" (HistoryItem.ts) skips the resume prompts
        relevant = (m for m in reversed(tail) if m.get("ask") not in _RESUME_ASKS)
        last_ts = next((ts for m in relevant if (ts := to_ms(m.get("ts")))), None)
        last_text = next((t for m in reversed(tail) if (t := ui_text(m))), None)
        created = _id_ms(task_id) or to_ms(head[0].get("ts")) or mtime_ms
        storage = os.path.dirname(os.path.dirname(task_dir))
        entry = self._history(os.path.join(storage, "state", _HISTORY), quiet=True).get(task_id)
        directory = (entry.cwd if entry else None) or self._api_cwd(task_dir)
        return [
            session_meta(
                AGENT_ID,
                task_id,
                path,
                directory,
                prompt=prompt,
                last_text=last_text,
                created=created,
                last_activity=last_ts,
            )
        ]

    def _parse_history(self, path: str) -> list[TraceMeta]:
        tasks = os.path.join(os.path.dirname(os.path.dirname(path)), "tasks")
        return [
            TraceMeta(
                agent_id=AGENT_ID,
                trace_id=task_id,
                # the task's transcript, not this shared file: one stable source per trace
                source_path=os.path.join(tasks, task_id, _UI),
                directory=entry.cwd,
                title=title(entry.task),
                preview=None,  # the transcript has the latest message; never overwrite it
                timestamp=entry.ts,
                created=_id_ms(task_id),
            )
            for task_id, entry in self._history(path).items()
        ]

    def _history(self, path: str, *, quiet: bool = False) -> dict[str, _Entry]:
        """The entries of a taskHistory.json, re-read only when its size or mtime moved."""
        try:
            with SessionFile(path) as f:
                stamp = (f.size, f.mtime_ns)
                with self._lock:
                    cached = self._histories.get(path)
                if cached is not None and cached[0] == stamp:
                    return cached[1]
                doc = Document(f)
        except ParseError:
            if quiet:  # a lookup for a transcript: the history's own event reports it
                return {}
            raise
        items = doc.leading_items() + objects(doc.tail, "id") if doc.partial else doc.require(list)
        entries: dict[str, _Entry] = {}
        for item in items:
            task_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(task_id, str) and task_id and "/" not in task_id:
                cwd, task = item.get("cwdOnTaskInitialization"), item.get("task")
                entries[task_id] = _Entry(
                    cwd if isinstance(cwd, str) and os.path.isabs(cwd) else None,
                    task if isinstance(task, str) else None,
                    to_ms(item.get("ts")),
                )
        with self._lock:
            self._histories[path] = (stamp, entries)
        return entries

    def _api_cwd(self, task_dir: str) -> str | None:
        """The cwd in the environment details of a task's first API turn (bounded read)."""
        if (known := self._api_cwds.get(task_dir)) is not None:
            return known
        try:
            with SessionFile(os.path.join(task_dir, _API)) as f:
                head = f.read_document(_API_HEAD).decode("utf-8", "replace")
        except ParseError:
            return None
        # The first match is in the first user turn: every turn's details carry the line.
        found = _CWD_LINE.search(head)
        raw = loads(f'"{found.group(1)}"') if found else None  # as escaped in the JSON
        cwd = raw.removeprefix("Primary: ").strip() if isinstance(raw, str) else None
        if not cwd or not os.path.isabs(cwd):
            return None
        if len(self._api_cwds) >= _API_CWDS_MAX:
            self._api_cwds.clear()
        self._api_cwds[task_dir] = cwd
        return cwd

    # -- SDK era ----------------------------------------------------------------------

    def _parse_sdk(self, path: str) -> list[TraceMeta]:
        session_dir = os.path.dirname(path)
        session_id = os.path.basename(session_dir)
        if "__" in session_id:
            return []  # a sub-session: part of its root session
        manifest_path = os.path.join(session_dir, session_id + ".json")
        messages_path = os.path.join(session_dir, session_id + ".messages.json")
        if path not in (manifest_path, messages_path):
            return []
        from_messages = path == messages_path
        if from_messages and not os.path.exists(manifest_path):
            return []  # the manifest brings its own event
        with SessionFile(manifest_path) as f:
            manifest = Document(f).require(dict)
        try:
            chat: Chat | None = read_messages(messages_path)
        except ParseError:
            if from_messages:
                raise
            chat = None  # half-written or gone: its own event comes
        return [_sdk_meta(session_id, manifest, manifest_path, chat)]

    def _parse_db(self, path: str) -> list[TraceMeta]:
        database = _sqlite.database_of(path)
        fresh: set[str] = set()
        with _sqlite.connect(path) as conn:
            cols = _sqlite.columns(conn, "sessions")
            if not {"session_id", "updated_at"} <= cols:
                return []  # Cline has not created its schema yet
            where = " AND ".join(["1", *(f for c, f in _NOT_SUBAGENT.items() if c in cols)])
            stamps = {
                sid: stamp
                for sid, stamp in conn.execute(
                    f"SELECT session_id, updated_at FROM sessions WHERE {where}"
                )
                if isinstance(sid, str) and sid and "__" not in sid and "/" not in sid
            }
            wanted = [c for c in (*_ROW_COLUMNS, "updated_at") if c in cols]
            select = f"SELECT {', '.join(wanted)} FROM sessions WHERE session_id IN "

            def read(ids: list[str]) -> dict[str, TraceMeta | None]:
                fresh.update(ids)
                rows: list[dict[str, Any]] = []
                for i in range(0, len(ids), _ROW_BATCH):  # within SQLite's parameter limit
                    batch = ids[i : i + _ROW_BATCH]
                    found = conn.execute(select + f"({', '.join('?' * len(batch))})", batch)
                    rows += [dict(zip(wanted, map(_sqlite.text, v), strict=True)) for v in found]
                return {row["session_id"]: self._row_meta(row, database) for row in rows}

            metas = self._memo.refresh(database, stamps, read)
        # A session not re-read keeps what the files say now: its preview and last activity
        # come from its messages file, which moves without the row.
        return [m if m.trace_id in fresh else replace(m, timestamp=None) for m in metas]

    def _row_meta(self, row: Mapping[str, Any], database: str) -> TraceMeta:
        session_id = row["session_id"]
        manifest = os.path.join(self._sessions_dir, session_id, session_id + ".json")
        source = manifest if os.path.isfile(manifest) else database
        meta = _sdk_meta(session_id, row, source, None)
        stamp = latest(meta.timestamp, to_ms(row.get("updated_at")))
        return replace(meta, preview=None, timestamp=stamp)  # the files have the latest text


def _sdk_meta(sid: str, fields: Mapping[str, Any], source: str, chat: Chat | None) -> TraceMeta:
    """One SDK session from its manifest (or its `sessions` row: the same names)."""
    cwd = next(
        (v for k in ("cwd", "workspace_root") if isinstance(v := fields.get(k), str) and v), None
    )
    prompt = fields.get("prompt")
    first = prompt.strip() if isinstance(prompt, str) and prompt.strip() else None
    first = first or (chat.first_user if chat else None)
    created = to_ms(fields.get("started_at")) or _id_ms(sid.partition("_")[0])
    return session_meta(
        AGENT_ID,
        sid,
        source,
        cwd,
        prompt=first,
        last_text=chat.last_text if chat else None,
        created=created,
        last_activity=latest(chat.updated if chat else None, to_ms(fields.get("ended_at"))),
    )


def _id_ms(task_id: str) -> int | None:
    """A Cline id's creation time: task ids are `Date.now()`, SDK ids start with it."""
    return to_ms(int(task_id)) if task_id.isdigit() and len(task_id) <= 16 else None


def _env_dir(config: Config, name: str) -> str | None:
    value = config.environ.get(name, "").strip()
    return str(config.expand(value)) if value else None
