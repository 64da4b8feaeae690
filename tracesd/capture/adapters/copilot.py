"""GitHub Copilot Chat in VS Code: `<User>/workspaceStorage/<ws>/chatSessions/<id>.jsonl`.

VS Code keeps the chat history per window: `<ws>/chatSessions/` for a folder or workspace,
`globalStorage/emptyWindowChatSessions/` for an empty window, and
`globalStorage/transferredChatSessions/` for a chat moved to another window (same id as its
workspace copy). `<User>` is per app (Code, Code - Insiders, VSCodium), resolved as VS Code
does: `$VSCODE_PORTABLE/user-data`, `$VSCODE_APPDATA/<app>`, `~/Library/Application
Support/<app>` on macOS, `$XDG_CONFIG_HOME/<app>` and `~/.config/<app>` on Linux.

A `.jsonl` is an operation log, replayed (in bounds, and resumed after an append) by
`_oplog` as far as a trace needs. A `.json` is the older flat snapshot, rewritten whole; it
yields nothing beside a `.jsonl` of the same id. The cwd is not in the session:
`<ws>/workspace.json` names the folder (or a `.code-workspace`, whose first folder we take).
Skipped: chats without requests (not traces yet), temp and side files, remote folders
(`vscode-remote://`: no local cwd), the `state.vscdb` index.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from tracesd.capture.adapters import _roots, _vscode
from tracesd.capture.adapters._docs import Document, decode_at
from tracesd.capture.adapters._files import SessionFile
from tracesd.capture.adapters._oplog import OperationLogs, Session, reply_text
from tracesd.capture.adapters._text import latest, preview, title, to_ms
from tracesd.errors import ParseError
from tracesd.models import Parsed, TraceMeta

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

AGENT_ID = "copilot"
APPS = ("Code", "Code - Insiders", "VSCodium")
_FLAT_ROOTS = ("emptyWindowChatSessions", "transferredChatSessions")
_NAME = re.compile(r"[A-Za-z0-9_-]+\.jsonl?")
_MESSAGE_TEXT = re.compile(r'"message"\s*:\s*\{\s*"text"\s*:')


class Copilot:
    agent_id = AGENT_ID
    env_vars = _vscode.ENV_VARS

    def __init__(self, config: Config) -> None:
        roots: list[str] = []
        for user in _roots.resolve(
            config, AGENT_ID, [str(u) for u in _vscode.user_dirs(config, APPS)]
        ):
            roots.append(os.path.join(user, "workspaceStorage"))
            roots += [os.path.join(user, "globalStorage", name) for name in _FLAT_ROOTS]
        self._roots = tuple(roots)
        self._logs = OperationLogs()

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        return 3 if os.path.basename(root) == "workspaceStorage" else 1

    def matches(self, rel: str) -> bool:
        parts = rel.split("/")
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != "chatSessions"):
            return False
        return _NAME.fullmatch(parts[-1]) is not None and parts[-1] != "workspace.json"

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        if path.endswith(".json") and os.path.exists(path + "l"):
            return Parsed([])  # the operation log beside it is the session now
        stem = os.path.basename(path).rpartition(".")[0]
        with SessionFile(path) as f:
            found = self._logs.read(path, f) if path.endswith(".jsonl") else _read_flat(f)
            mtime_ms = f.mtime_ns // 1_000_000
        if found is None:
            return Parsed([])
        created = found.created or found.last_ts or mtime_ms
        trace = TraceMeta(
            agent_id=AGENT_ID,
            trace_id=found.session_id or stem,
            source_path=path,
            directory=_directory(path),
            title=found.first,
            preview=found.reply or found.last or preview(found.first),
            timestamp=latest(found.last_ts, created),
            created=created,
            agent_git=found.repo,
            model=found.model,
        )
        return Parsed([trace])


def _read_flat(f: SessionFile) -> Session | None:
    """The older flat document, rewritten whole; a very large one is read only in part."""
    doc = Document(f)
    session = Session()
    if not doc.partial:
        data = doc.require(dict)
        if not isinstance(data.get("requests"), list):
            raise ParseError("malformed", f"not a chat session document: {f.path!r}")
        session.load(data)
        last = data["requests"][-1] if data["requests"] else None
        session.reply = reply_text(last.get("response")) if isinstance(last, dict) else None
        session.last_ts = latest(session.last_ts, to_ms(data.get("lastMessageDate")))
        return session if session.count else None
    session.load({"requests": doc.leading_items("requests")[:1]})
    if session.first is None and (at := _MESSAGE_TEXT.search(doc.head)):
        found = decode_at(doc.head, at.end())
        session.first = title(found[0]) if found and isinstance(found[0], str) else None
    session.count = max(session.count, 1)  # requests are what makes a session this large
    # the id is the file name; the top-level creationDate follows the requests
    created = doc.member("creationDate", in_tail=True)
    session.apply(1, ["creationDate"], doc.member("creationDate") if created is None else created)
    stamps = [doc.member("lastMessageDate", in_tail=True), *doc.values("timestamp")]
    session.last_ts = latest(session.last_ts, *(to_ms(s) for s in stamps))
    return session


def _directory(path: str) -> str | None:
    """The folder of the window a workspace session belongs to (none for empty windows)."""
    sessions = os.path.dirname(path)
    if os.path.basename(sessions) != "chatSessions":
        return None
    return _vscode.workspace_folder(os.path.dirname(sessions))
