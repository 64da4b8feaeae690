"""Gemini CLI: `~/.gemini/tmp/<project>/chats/session-<ts>-<id8>.jsonl` (and legacy `.json`).

Two layouts share the tree. Since 2026-04 a session is an append-only JSONL event log: a
metadata record, message records, `{"$set": ...}` updates and `{"$rewindTo": id}`. Before
that it was one JSON document rewritten whole on every message. Neither holds the working
directory: the project directory's `.project_root` (or `~/.gemini/projects.json`) names it,
and old projects live under `sha256(cwd)`, resolved by hashing candidate paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import TYPE_CHECKING, Any

from tracesd.capture.adapters import _roots
from tracesd.capture.adapters._files import Records, SessionFile, tail_records
from tracesd.capture.adapters._text import latest, session_meta, text_of, to_ms
from tracesd.errors import ParseError
from tracesd.models import Parsed
from tracesd.safeopen import read_head

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

AGENT_ID = "gemini-cli"

_HASH_DIR = re.compile(r"^[0-9a-f]{64}$")
_SLASH_COMMAND = re.compile(r"^/[\w-]+(\s|$)")
_TOP_FIELD = re.compile(rb'"(sessionId|projectHash|startTime|lastUpdated|kind)"\s*:\s*"([^"\\]*)"')
_MESSAGES = re.compile(rb'"messages"\s*:\s*\[')
#: how long a map of candidate hashes is trusted before a miss rebuilds it
_HASH_MAP_TTL_S = 30.0


class GeminiCli:
    agent_id = AGENT_ID
    env_vars = ("GEMINI_CLI_HOME",)

    def __init__(self, config: Config) -> None:
        base = config.env_path("GEMINI_CLI_HOME") or config.home
        self._gemini = str(base / ".gemini")
        self._roots = _roots.resolve(config, AGENT_ID, [os.path.join(self._gemini, "tmp")])
        self._hashes = _ProjectHashes(str(config.home), self._roots)

    def roots(self) -> tuple[str, ...]:
        return self._roots

    def depth(self, root: str) -> int:
        return 3

    def matches(self, rel: str) -> bool:
        parts = rel.split("/")
        return (
            len(parts) == 3
            and parts[1] == "chats"
            and parts[2].startswith("session-")
            and parts[2].endswith((".jsonl", ".json"))
        )

    def parse(self, path: str, known_directories: frozenset[str] = frozenset()) -> Parsed:
        if path.endswith(".json") and os.path.exists(path + "l"):
            return Parsed([])  # resumed: the migrated .jsonl next to it is the session now
        with SessionFile(path) as f:
            session = _parse_jsonl(f) if path.endswith(".jsonl") else _parse_json(f)
            mtime_ms = f.mtime_ns // 1_000_000
        if session is None:
            return Parsed([], tuple(f.skipped))
        project_dir = os.path.dirname(os.path.dirname(path))
        created = to_ms(session.get("startTime")) or mtime_ms
        trace = session_meta(
            AGENT_ID,
            session["sessionId"],
            path,
            self._directory(project_dir, session.get("projectHash"), known_directories),
            prompt=session["prompt"],
            last_text=session["last_text"],
            created=created,
            last_activity=session["last_ts"],
            model=session["model"],
        )
        return Parsed([trace], tuple(f.skipped))

    def _directory(
        self, project_dir: str, project_hash: Any, known_directories: frozenset[str]
    ) -> str | None:
        marker = _read_small(os.path.join(project_dir, ".project_root"))
        if marker:
            return marker
        slug = os.path.basename(project_dir)
        registry = _read_projects(
            os.path.join(os.path.dirname(os.path.dirname(project_dir)), "projects.json")
        )
        for directory, name in registry.items():
            if name == slug:
                return directory
        wanted = slug if _HASH_DIR.match(slug) else project_hash
        if not isinstance(wanted, str):
            return None
        return self._hashes.lookup(wanted, known_directories)


def _parse_jsonl(f: SessionFile) -> dict[str, Any] | None:
    meta: dict[str, Any] | None = None
    prompts: list[tuple[Any, str]] = []  # (message id, text) of user prompts, in order
    seen_ids: list[Any] = []
    model: str | None = None
    records = Records(f)
    for record in records:
        if meta is None:
            if isinstance(record.get("sessionId"), str) and record["sessionId"]:
                meta = record
                if record.get("kind") == "subagent":
                    return None
            continue
        if "$rewindTo" in record:
            target = record["$rewindTo"]
            if target in seen_ids:
                cut = seen_ids.index(target)
                dropped = set(map(_key, seen_ids[cut:]))
                del seen_ids[cut:]
                prompts = [(i, t) for i, t in prompts if _key(i) not in dropped]
        elif record.get("type") in ("user", "gemini") and "id" in record:
            seen_ids.append(record["id"])
            text = _user_text(record)
            if text is not None:
                prompts.append((record["id"], text))
            model = model or _model(record)
        # Once the title (and the model) are known, only a rewind can change the title.
        records.only_containing = b'"$rewindTo"' if prompts and model else None
    if meta is None:
        records.explain_none()
        return None

    # `$set.lastUpdated` follows every message; a message re-appended with its token
    # counts can come after it, so take the newest of both kinds.
    last_ts = to_ms(meta.get("lastUpdated"))
    last_text: str | None = None
    updated = False
    for entry in tail_records(f):
        update = entry.get("$set")
        if isinstance(update, dict) and not updated:
            last_ts = latest(last_ts, to_ms(update.get("lastUpdated")))
            updated = True
        elif entry.get("type") in ("user", "gemini"):
            last_ts = latest(last_ts, to_ms(entry.get("timestamp")))
            last_text = last_text or _any_text(entry)
        if updated and last_text:
            break
    return {
        "sessionId": meta["sessionId"],
        "projectHash": meta.get("projectHash"),
        "startTime": meta.get("startTime"),
        "prompt": prompts[0][1] if prompts else None,
        "last_ts": last_ts,
        "last_text": last_text,
        "model": model,
    }


def _parse_json(f: SessionFile) -> dict[str, Any] | None:
    """The legacy whole-file document; a large one is read only in its first part."""
    data = f.read_document()
    if not data.strip():
        return None
    whole = len(data) == f.size
    messages: list[Any]
    if whole:
        try:
            document = json.loads(data)
        except (ValueError, RecursionError):
            # written with a plain truncate + write: we may have caught it half-way
            raise ParseError("incomplete", f"not a complete JSON document: {f.path!r}") from None
        if not isinstance(document, dict):
            raise ParseError("malformed", f"not a session document: {f.path!r}")
        top = document
        listed = document.get("messages")
        messages = listed if isinstance(listed, list) else []
    else:
        top, messages = _partial_document(data)
    session_id = top.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        raise ParseError("malformed", f"session document without a sessionId: {f.path!r}")
    if top.get("kind") == "subagent":
        return None
    prompt = next((t for m in messages if (t := _user_text(m)) is not None), None)
    last_text = next((t for m in reversed(messages) if (t := _any_text(m))), None)
    return {
        "sessionId": session_id,
        "projectHash": top.get("projectHash"),
        "startTime": top.get("startTime"),
        "prompt": prompt,
        "last_ts": to_ms(top.get("lastUpdated")),
        "last_text": last_text,
        "model": next((m for m in map(_model, messages) if m), None),
    }


def _partial_document(data: bytes) -> tuple[dict[str, Any], list[Any]]:
    """Top-level string fields before `"messages"`, and the messages that fit in `data`."""
    found = _MESSAGES.search(data)
    head = data[: found.start()] if found else data
    top = {
        m.group(1).decode(): m.group(2).decode("utf-8", "replace")
        for m in _TOP_FIELD.finditer(head)
    }
    messages: list[Any] = []
    if found:
        text = data[found.end() :].decode("utf-8", "ignore")
        decoder = json.JSONDecoder()
        pos = 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            try:
                item, pos = decoder.raw_decode(text, pos)
            except (ValueError, RecursionError):
                break
            messages.append(item)
    return top, messages


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _model(message: Any) -> str | None:
    """The model of a `gemini` message (the first one names the session's model)."""
    if not isinstance(message, dict) or message.get("type") != "gemini":
        return None
    model = message.get("model")
    return model if isinstance(model, str) and model else None


def _user_text(message: Any) -> str | None:
    if not isinstance(message, dict) or message.get("type") != "user":
        return None
    text = text_of(message.get("content"))
    if text is None:
        return None
    text = text.strip()
    if not text or _SLASH_COMMAND.match(text):
        return None
    return text


def _any_text(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    if message.get("type") == "user":
        return _user_text(message)
    if message.get("type") == "gemini":
        text = text_of(message.get("content"))
        return text.strip() or None if text else None
    return None


def _read_small(path: str, limit: int = 64 * 1024) -> str | None:
    try:
        text = read_head(path, limit).decode("utf-8", "replace").strip()
    except OSError:  # missing, unreadable, or a FIFO or device: refused, never waited on
        return None
    return text or None


def _read_projects(path: str) -> dict[str, str]:
    raw = _read_small(path, 4 * 1024 * 1024)
    if not raw:
        return {}
    try:
        projects = json.loads(raw).get("projects")
    except (ValueError, AttributeError, RecursionError):
        return {}
    if not isinstance(projects, dict):
        return {}
    return {k: v for k, v in projects.items() if isinstance(k, str) and isinstance(v, str)}


class _ProjectHashes:
    """sha256(cwd) -> cwd for legacy project directories, from candidate paths.

    Candidates: the project registry, every `.project_root`, directories other traces were
    made in, their siblings, and the home directory two levels down. Rebuilt on a miss at
    most every few seconds, so a tree of legacy sessions costs one walk, not one per file.
    """

    def __init__(self, home: str, roots: tuple[str, ...]):
        self._home = home
        self._roots = roots
        self._map: dict[str, str] = {}
        self._built_at = float("-inf")

    def lookup(self, digest: str, known_directories: frozenset[str]) -> str | None:
        found = self._map.get(digest)
        if found is None and time.monotonic() - self._built_at > _HASH_MAP_TTL_S:
            self._map = {_sha256(c): c for c in self._candidates(known_directories)}
            self._built_at = time.monotonic()
            found = self._map.get(digest)
        return found

    def _candidates(self, known_directories: frozenset[str], budget: int = 20_000) -> set[str]:
        seeds: set[str] = set(known_directories)
        for root in self._roots:
            seeds.update(_read_projects(os.path.join(os.path.dirname(root), "projects.json")))
            for project in _subdirs(root, budget):
                marker = _read_small(os.path.join(project, ".project_root"))
                if marker:
                    seeds.add(marker)
        candidates = set(seeds)
        for parent in {os.path.dirname(s) for s in seeds if s}:
            candidates.update(_subdirs(parent, budget))
        for child in _subdirs(self._home, budget):
            candidates.add(child)
            candidates.update(_subdirs(child, budget))
            if len(candidates) > budget:
                break
        return candidates


def _subdirs(path: str, limit: int) -> list[str]:
    out: list[str] = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    out.append(entry.path)
                    if len(out) >= limit:
                        break
    except OSError:
        pass
    return out


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
