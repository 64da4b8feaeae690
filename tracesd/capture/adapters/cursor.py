"""Cursor: three stores, one trace per composer (chat) id.

* IDE: `<Cursor User>/globalStorage/state.vscdb` (+ `-wal`), a VS Code key-value store;
  `cursorDiskKV` row `composerData:<id>` is one chat, `bubbleId:<id>:<bubble>` one message.
  cwd: `workspaceIdentifier.uri.fsPath` (Cursor >= 3.12), else the `workspace.json` folder of
  `workspaceStorage/<workspaceIdentifier.id>`, else (Cursor 2) of the workspace whose
  `composer.composerData` lists the id, else the first `file://` URI of its first bubbles'
  `workspaceUris`. Only globalStorage itself is watched, not its tree.
* Agent transcripts: `~/.cursor/projects/<slug>/agent-transcripts/<id>.jsonl` (or `.txt`,
  or `<id>/<id>.jsonl`). No cwd, no times: the IDE store's composer supplies them when it
  has one (so both sources agree), else the lossy slug is matched against candidate
  directories and the file system, and the times are the file's mtime.
* CLI (`cursor-agent`): `~/.cursor/chats/<md5(cwd)>/<chatId>/store.db`: hex-encoded JSON
  `meta['0']`, JSON message blobs; cwd by hashing candidate directories.

Skipped: drafts and chats without a user message, subagent and best-of-N sub-composers,
`subagents/` transcripts, a `.txt` transcript next to its `.jsonl`, temp files, and the
directories of remote (`vscode-remote://`) workspaces, which are not on this machine.

The stores' SQLite reading is in `_cursor_stores`; the transcripts, and the directories the
lossy project names (slug, md5) stand for, are here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from tracesd.capture.adapters import _roots, _sqlite, _vscode
from tracesd.capture.adapters._cursor_stores import (
    AGENT_ID,
    CLI_DB,
    ID_PATTERN,
    IDE_DB,
    Stores,
    Texts,
    first_text,
    record_text,
    trace_meta,
    user_text,
)
from tracesd.capture.adapters._files import Records, SessionFile, tail_records
from tracesd.errors import ParseError
from tracesd.models import Parsed

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

_TRANSCRIPTS = "agent-transcripts"
_NOT_SLUG = re.compile(r"[^0-9A-Za-z]+")
_NOT_PROSE = ("[Tool call]", "[Tool result]", "[Thinking]")
_TXT_HEAD = 1024 * 1024
_RETRY_S = 30.0  # how long a failed directory lookup stands before it is tried again


class Cursor:
    agent_id = AGENT_ID
    env_vars = (*_vscode.ENV_VARS, "CURSOR_CONFIG_DIR")

    def __init__(self, config: Config) -> None:
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
        ide_dbs = tuple(os.path.join(r, IDE_DB) for r in [*overrides, *ide_roots])
        storages = [str(u / "workspaceStorage") for u in users]
        self._directories = _Directories(str(config.home), storages)
        self._stores = Stores(ide_dbs)
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
            return name in (IDE_DB, f"{IDE_DB}-wal", f"{IDE_DB}-journal")
        if len(parts) == 3 and name in (CLI_DB, f"{CLI_DB}-wal", f"{CLI_DB}-journal"):
            return bool(ID_PATTERN.match(parts[0]) and ID_PATTERN.match(parts[1]))
        if len(parts) not in (3, 4) or parts[1] != _TRANSCRIPTS:
            return False
        stem, _, ext = name.partition(".")  # a temp file has another dot, or a leading one
        nested_ok = len(parts) == 3 or stem == parts[2]  # <id>/<id>.jsonl, not subagents/
        return ext in ("jsonl", "txt") and bool(ID_PATTERN.match(stem)) and nested_ok

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        database = _sqlite.database_of(path)
        name = os.path.basename(database)
        if name == IDE_DB:
            return Parsed(self._stores.parse_ide(database, self._sessions))
        if name == CLI_DB:

            def project_directory(digest: str) -> str | None:
                return self._directories.by_md5(digest, known_directories)

            return Parsed(self._stores.parse_cli(database, self._sessions, project_directory))
        return self._parse_transcript(path, known_directories)

    # -- agent transcripts -------------------------------------------------------------

    def _parse_transcript(self, path: str, known_directories: frozenset[str]) -> Parsed:
        if path.endswith(".txt") and os.path.exists(path[: -len(".txt")] + ".jsonl"):
            return Parsed([])  # the .jsonl beside it is the same session
        cid = os.path.basename(path).partition(".")[0]
        with SessionFile(path) as f:
            texts = _read_jsonl(f) if path.endswith(".jsonl") else _read_txt(f)
            mtime_ms = f.mtime_ns // 1_000_000
            sub, ide, directory = self._stores.lookup_composer(cid, self._sessions)
        skipped = tuple(f.skipped)
        if sub:
            return Parsed([], skipped)
        folder = os.path.dirname(path)
        if os.path.basename(folder) != _TRANSCRIPTS:
            folder = os.path.dirname(folder)  # <id>/<id>.jsonl
        slug = os.path.basename(os.path.dirname(folder))
        directory = directory or self._directories.by_slug(slug, known_directories)
        if ide is not None:
            found = replace(ide, source_path=path, directory=ide.directory or directory)
            return Parsed([found], skipped)
        if texts == (None, None):
            return Parsed([], skipped)
        return Parsed([trace_meta(cid, path, directory, texts, (mtime_ms, mtime_ms))], skipped)


# -- reading -----------------------------------------------------------------------------


def _read_jsonl(f: SessionFile) -> Texts:
    records = Records(f)
    prompt: str | None = None
    for record in records:
        if record.get("role") == "user" and (prompt := record_text(record)):
            break
    if not records.count:
        records.explain_none()
        raise ParseError("incomplete", f"no complete transcript line yet: {f.path!r}")
    return prompt, first_text(record_text(r) for r in tail_records(f))


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
    prompt = first_text(user_text(t) for role, t in blocks if role == "user")
    tail = blocks if len(head) == f.size else _blocks(f.read_tail())
    return prompt, first_text(_prose(role, t) for role, t in reversed(tail))


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
        return user_text(text)
    kept = (ln for ln in text.split("\n") if ln[:1] not in (" ", "\t"))
    return "\n".join(ln for ln in kept if not ln.startswith(_NOT_PROSE)).strip() or None


# -- directories -------------------------------------------------------------------------


class _Directories:
    """Lossy project names -> directories: md5(cwd) for CLI chats, the slug (non-alphanumeric
    runs as dashes) for transcripts. Candidates: directories other traces were made in and
    their siblings, Cursor's workspace folders, the home directory two levels down; rebuilt
    on a miss at most every _RETRY_S. A slug still unknown is looked for from `/` down."""

    def __init__(self, home: str, storages: list[str]):
        self._home, self._storages = home, storages
        self._map: dict[str, str] = {}
        self._built_at = float("-inf")
        self._probed: dict[str, tuple[float, str | None]] = {}

    def by_md5(self, digest: str, known_directories: frozenset[str]) -> str | None:
        return self._lookup(digest, known_directories)

    def by_slug(self, slug: str, known_directories: frozenset[str]) -> str | None:
        want = _slugged(slug)
        if not want:
            return None
        found = self._lookup("/" + want, known_directories)
        checked, probed = self._probed.get(want, (float("-inf"), None))
        if found is None and probed is None and time.monotonic() - checked > _RETRY_S:
            probed = _probe(want)
            self._probed[want] = (time.monotonic(), probed)
        return found or probed

    def _lookup(self, key: str, known_directories: frozenset[str]) -> str | None:
        found = self._map.get(key)
        if found is None and time.monotonic() - self._built_at > _RETRY_S:
            keys = (_md5, lambda c: "/" + _slugged(c))
            candidates = self._candidates(known_directories)
            self._map = {key_of(c): c for c in candidates for key_of in keys}
            self._built_at = time.monotonic()
            found = self._map.get(key)
        return found

    def _candidates(self, known_directories: frozenset[str], budget: int = 20_000) -> set[str]:
        seeds = set(known_directories)
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
