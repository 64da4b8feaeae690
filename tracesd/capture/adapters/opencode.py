"""OpenCode: `$XDG_DATA_HOME/opencode` (`~/.local/share/opencode`, on macOS too).

Two generations, possibly side by side (the 1.2.0 migration leaves the old tree behind):

* since 1.2.0, every session is a row of one SQLite store, `opencode.db` (or
  `opencode-<channel>.db`, or `$OPENCODE_DB`), with tables `session`, `message` and `part`.
  The store and its `-wal` file are watched (the data directory alone, not the `storage/`
  tree below it); a change re-reads only the sessions whose stamp (`time_updated` and the
  newest message) moved.
* before, `storage/session/<projectID>/<sessionID>.json`, rewritten whole whenever the
  session's title or update time changes. Its messages and parts are one file each
  (`storage/message/<sessionID>/`, `storage/part/<messageID>/`): they are read, bounded,
  when the session file changes, but never watched (a heavy user has tens of thousands).

Both yield the session id (`ses_...`), so a migrated session is one trace. The working
directory is `session.directory`; the title is the first user message's text parts
(synthetic parts are editor context), never the `New session - <ISO>` placeholder.
Subagent sessions (`parent_id`) are skipped, as are temp files and every other side file.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tracesd.capture.adapters import _roots, _sqlite
from tracesd.capture.adapters._docs import Document
from tracesd.capture.adapters._files import SessionFile
from tracesd.capture.adapters._text import session_meta, to_ms
from tracesd.errors import ParseError
from tracesd.models import Parsed, TraceMeta
from tracesd.safeopen import NotRegular, check_store

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

AGENT_ID = "opencode"

_STORE = re.compile(r"opencode(?:-[A-Za-z0-9._-]+)?\.db(?:-wal|-journal)?")
_SESSION_FILE = re.compile(r"ses_[0-9A-Za-z]{1,64}\.json")
_PLACEHOLDER = re.compile(r"(?:New|Child) session - \d{4}-\d\d-\d\dT[\d:.]+Z?")
#: sessions read per query when a store changed
_BATCH = 500
#: legacy messages looked at for the first prompt, and from the end for the latest text
_MAX_MESSAGES = 50
_MAX_PARTS = 100
#: legacy message and part files above this are passed over (tool output, not prompts)
_MAX_ITEM_BYTES = 1024 * 1024
#: what one legacy session may read of its message and part files
_BUDGET_BYTES = 8 * 1024 * 1024


class OpenCode:
    agent_id = AGENT_ID
    env_vars = ("XDG_DATA_HOME", "OPENCODE_DB")

    def __init__(self, config: Config) -> None:
        default = _roots.xdg_data_home(config) / "opencode"
        [data] = _roots.resolve(config, AGENT_ID, [str(default)])
        self._sessions_root = os.path.join(data, "storage", "session")
        roots = [self._sessions_root, data]
        #: file names of a store that `$OPENCODE_DB` moved (with its -wal and -journal)
        self._store_names: frozenset[str] = frozenset()
        custom = config.environ.get("OPENCODE_DB", "")
        if custom and custom != ":memory:" and AGENT_ID not in config.agents.roots:
            # as OpenCode does: an absolute path as it is, a relative one below `data`
            database = os.path.normpath(os.path.join(data, custom))
            name = os.path.basename(database)
            self._store_names = frozenset(name + s for s in ("", "-wal", "-journal"))
            roots.append(os.path.dirname(database))
        self._roots = tuple(dict.fromkeys(roots))
        self._memo = _sqlite.Sessions()

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        # storage/session/<projectID>/<sessionID>.json; the stores sit directly in theirs
        return 2 if root == self._sessions_root else 1

    def matches(self, rel: str) -> bool:
        project, slash, name = rel.partition("/")
        if slash:
            return bool(project) and _SESSION_FILE.fullmatch(name) is not None
        return _STORE.fullmatch(rel) is not None or rel in self._store_names

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        if _SESSION_FILE.fullmatch(os.path.basename(path)):
            return Parsed(_parse_session_file(path))
        return Parsed(self._parse_store(_sqlite.database_of(path)))

    # -- SQLite store (>= 1.2.0) -------------------------------------------------------

    def _parse_store(self, database: str) -> list[TraceMeta]:
        _check_store_file(database)
        with _sqlite.connect(database) as conn:
            session = _sqlite.columns(conn, "session")
            if "id" not in session:
                tables = {row[0] for row in conn.execute(_TABLES)}
                if session or (tables and not tables & {"project", "__drizzle_migrations"}):
                    raise ParseError("malformed", f"not an OpenCode store: {database!r}")
                return []  # created, not migrated yet: the migration brings another event
            message = _sqlite.columns(conn, "message")
            part = _sqlite.columns(conn, "part")
            has_messages = {"id", "session_id", "time_created", "data"} <= message
            has_parts = has_messages and {"id", "message_id", "data"} <= part
            newest = (
                "(SELECT max(m.time_created) FROM message m WHERE m.session_id = s.id)"
                if has_messages
                else "NULL"
            )
            top = "WHERE s.parent_id IS NULL OR s.parent_id = ''" if "parent_id" in session else ""
            rows = conn.execute(
                f"SELECT s.id, {_col(session, 'time_updated')}, {newest} FROM session s {top}"
            )
            stamps = {row[0]: (row[1], row[2]) for row in rows if isinstance(row[0], str)}

            def read(ids: list[str]) -> dict[str, TraceMeta | None]:
                found: dict[str, TraceMeta | None] = {}
                for start in range(0, len(ids), _BATCH):
                    batch = json.dumps(ids[start : start + _BATCH])
                    found.update(_read_rows(conn, database, session, batch, has_parts))
                return found

            return self._memo.refresh(database, stamps, read)


def _col(columns: set[str], name: str, alias: str = "s") -> str:
    return f"{alias}.{name}" if name in columns else "NULL"


def _check_store_file(database: str) -> None:
    try:
        st = check_store(database)
    except NotRegular as exc:
        raise ParseError("not_a_file", str(exc)) from None
    except FileNotFoundError:
        raise ParseError(
            "vanished", f"store vanished before it could be read: {database!r}"
        ) from None
    except OSError as exc:
        raise ParseError("unreadable", f"cannot read {database!r}: {exc.strerror}") from None
    if st.st_size == 0 and not os.path.exists(database + "-wal"):
        raise ParseError("empty", f"empty store: {database!r}")


_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
# A part's data as JSON, or NULL when it is not valid JSON (json_extract would raise).
_J = "(CASE WHEN json_valid({0}.data) THEN {0}.data END)"
_REAL_TEXT = (
    f"json_extract({_J}, '$.type') = 'text'"
    f" AND coalesce(json_extract({_J}, '$.synthetic'), 0) = 0"
    f" AND coalesce(json_extract({_J}, '$.ignored'), 0) = 0"
)
_FIRST_PROMPTS = f"""
    SELECT f.sid, json_extract(p.data, '$.text') FROM (
        SELECT j.value AS sid, (
            SELECT m.id FROM message m
            WHERE m.session_id = j.value AND json_extract({_J.format("m")}, '$.role') = 'user'
              AND EXISTS (SELECT 1 FROM part q
                          WHERE q.message_id = m.id AND {_REAL_TEXT.format("q")})
            ORDER BY m.time_created, m.id LIMIT 1) AS mid
        FROM json_each(?) j) f
    JOIN part p ON p.message_id = f.mid
    WHERE {_REAL_TEXT.format("p")}
    ORDER BY f.sid, p.id"""
_LATEST_TEXTS = f"""
    SELECT j.value, (
        SELECT (SELECT json_extract(p.data, '$.text') FROM part p
                WHERE p.message_id = m.id AND {_REAL_TEXT.format("p")}
                ORDER BY p.id DESC LIMIT 1) AS found
        FROM message m WHERE m.session_id = j.value AND found IS NOT NULL
        ORDER BY m.time_created DESC, m.id DESC LIMIT 1)
    FROM json_each(?) j"""
#: each session's first message model (what the Traces CLI sends), summaries passed over
_FIRST_MODELS = f"""
    SELECT j.value, (
        SELECT json_extract({_J.format("m")}, '$.modelID') AS model FROM message m
        WHERE m.session_id = j.value AND model IS NOT NULL AND NOT (
            json_extract({_J.format("m")}, '$.role') = 'assistant'
            AND coalesce(json_extract({_J.format("m")}, '$.summary'), 0) = 1)
        ORDER BY m.time_created, m.id LIMIT 1)
    FROM json_each(?) j"""


def _read_rows(
    conn: sqlite3.Connection, database: str, session: set[str], batch: str, has_parts: bool
) -> dict[str, TraceMeta | None]:
    """The sessions whose ids are in `batch` (a JSON array), in one snapshot of the store."""
    prompts: dict[str, list[str]] = {}
    latest_texts: dict[str, str] = {}
    models: dict[str, str] = {}
    if has_parts:
        models = {
            sid: model
            for sid, model in conn.execute(_FIRST_MODELS, (batch,))
            if isinstance(model, str) and model.strip()
        }
        for sid, text in conn.execute(_FIRST_PROMPTS, (batch,)):
            if isinstance(text, str):
                prompts.setdefault(sid, []).append(text)
        latest_texts = {
            sid: text
            for sid, text in conn.execute(_LATEST_TEXTS, (batch,))
            if isinstance(text, str)
        }
    project = _sqlite.columns(conn, "project")
    joined = "project_id" in session and {"id", "worktree"} <= project
    sql = (
        f"SELECT s.id, {_col(session, 'directory')}, {_col(session, 'title')},"
        f" {_col(session, 'time_created')}, {_col(session, 'time_updated')},"
        f" {'p.worktree' if joined else 'NULL'} FROM session s"
        f" {'LEFT JOIN project p ON p.id = s.project_id' if joined else ''}"
        " WHERE s.id IN (SELECT value FROM json_each(?))"
    )
    found: dict[str, TraceMeta | None] = {}
    for sid, directory, native, created_at, updated_at, worktree in conn.execute(sql, (batch,)):
        prompt = "\n".join(prompts[sid]) if sid in prompts else None
        found[sid] = _meta(
            sid,
            database,
            directory=_directory(directory, worktree),
            prompt=prompt or _native_title(native),
            last_text=latest_texts.get(sid),
            created=to_ms(created_at),
            updated=to_ms(updated_at),
            model=models.get(sid),
        )
    return found


def _meta(
    sid: str,
    source: str,
    *,
    directory: str | None,
    prompt: str | None,
    last_text: str | None,
    created: int | None,
    updated: int | None,
    model: str | None = None,
) -> TraceMeta:
    return session_meta(
        AGENT_ID,
        sid,
        source,
        directory,
        prompt=prompt,
        last_text=last_text,
        created=created,
        last_activity=updated,
        model=model,
    )


def _directory(directory: Any, worktree: Any) -> str | None:
    """`session.directory`; the project's worktree only when a session lacks it (never
    the `global` project's `/`)."""
    for candidate in (directory, worktree):
        if isinstance(candidate, str) and candidate and candidate != "/":
            return candidate
    return None


def _native_title(value: Any) -> str | None:
    """OpenCode's own title, unless it is still the placeholder it starts with."""
    if not isinstance(value, str) or _PLACEHOLDER.fullmatch(value.strip()):
        return None
    return value


# -- legacy JSON tree (< 1.2.0) -------------------------------------------------------


def _parse_session_file(path: str) -> list[TraceMeta]:
    with SessionFile(path) as f:
        doc = Document(f)
        mtime_ms = f.mtime_ns // 1_000_000
    if doc.partial:  # a huge summary of diffs; the fields we need come first
        keys = ("id", "parentID", "directory", "projectID", "title", "time")
        info: dict[str, Any] = {key: doc.member(key) for key in keys}
    else:
        info = doc.require(dict)
    sid = info.get("id")
    if not isinstance(sid, str) or not sid.startswith("ses_"):
        raise ParseError("malformed", f"session file without a session id: {path!r}")
    if info.get("parentID"):
        return []  # a subagent's session: part of its parent's
    storage = os.path.dirname(os.path.dirname(os.path.dirname(path)))
    directory = info.get("directory")
    if not isinstance(directory, str) or not directory:
        directory = _legacy_worktree(storage, info.get("projectID"))
    times = info.get("time")
    times = times if isinstance(times, dict) else {}
    prompt, last_text, model = _legacy_texts(storage, sid, _Budget(_BUDGET_BYTES))
    created = to_ms(times.get("created")) or mtime_ms
    return [
        _meta(
            sid,
            path,
            directory=_directory(directory, None),
            prompt=prompt or _native_title(info.get("title")),
            last_text=last_text,
            created=created,
            updated=to_ms(times.get("updated")),
            model=model,
        )
    ]


def _legacy_texts(
    storage: str, sid: str, budget: _Budget
) -> tuple[str | None, str | None, str | None]:
    """The first user message's text, the latest text part and the first message's model
    (`modelID`, what the Traces CLI sends), from the message and part files (ids sort in
    creation order). Files caught half-written are passed over: the
    session file is rewritten again when the turn ends."""
    messages = _listing(os.path.join(storage, "message", sid), "msg_")
    prompt: str | None = None
    model: str | None = None
    for name in messages[:_MAX_MESSAGES]:
        message = _read_item(os.path.join(storage, "message", sid, name), budget)
        if message is None:
            continue
        if model is None and not _summary(message):
            model = _text_value(message.get("modelID"))
        if prompt is None and message.get("role") == "user":
            texts = list(_texts(storage, name.removesuffix(".json"), budget))
            if texts:
                prompt = "\n".join(texts)
        if prompt is not None and model is not None:
            break
    last_text: str | None = None
    for name in reversed(messages[-_MAX_MESSAGES:]):
        last_text = next(_texts(storage, name.removesuffix(".json"), budget, newest=True), None)
        if last_text is not None or budget.spent:
            break
    return prompt, last_text, model


def _summary(message: dict[str, Any]) -> bool:
    return message.get("role") == "assistant" and message.get("summary") is True


def _text_value(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _texts(storage: str, message_id: str, budget: _Budget, newest: bool = False) -> Iterator[str]:
    """The real (not synthetic) text parts of one message, oldest first (or newest)."""
    folder = os.path.join(storage, "part", message_id)
    names = _listing(folder, "prt_")
    for name in reversed(names[-_MAX_PARTS:]) if newest else names[:_MAX_PARTS]:
        part = _read_item(os.path.join(folder, name), budget)
        if part is None:
            continue
        text = part.get("text")
        real = not part.get("synthetic") and not part.get("ignored")
        if real and part.get("type") == "text" and isinstance(text, str) and text.strip():
            yield text


def _legacy_worktree(storage: str, project_id: Any) -> str | None:
    if not isinstance(project_id, str) or not project_id or "/" in project_id:
        return None
    project = _read_item(
        os.path.join(storage, "project", project_id + ".json"), _Budget(_MAX_ITEM_BYTES)
    )
    worktree = project.get("worktree") if project is not None else None
    return worktree if isinstance(worktree, str) else None


def _listing(folder: str, prefix: str) -> list[str]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(prefix) and n.endswith(".json"))


class _Budget:
    """How many more bytes one parse may read of a session's message and part files."""

    def __init__(self, left: int) -> None:
        self.left = left

    @property
    def spent(self) -> bool:
        return self.left <= 0


def _read_item(path: str, budget: _Budget) -> dict[str, Any] | None:
    """A small message, part or project file as a dict; None when it is missing, too big,
    half-written or not an object (or the session's read budget is spent)."""
    if budget.spent:
        return None
    try:
        with SessionFile(path) as f:
            if f.size > _MAX_ITEM_BYTES:
                return None
            budget.left -= f.size
            value = Document(f, max_bytes=_MAX_ITEM_BYTES).whole
    except ParseError:
        return None
    return value if isinstance(value, dict) else None
