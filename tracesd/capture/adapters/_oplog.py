"""VS Code's chat operation logs (Copilot's `chatSessions/<id>.jsonl`), replayed in bounds.

A log is a sequence of `{"kind", "k", "v", "i"}` lines: 0 a full snapshot (the first line;
again when VS Code compacts the file), 1 set at path `k`, 2 cut the array at `k` to `i` (if
given) and push `v`, 3 delete. Only what a trace needs is replayed into a `Session` (id,
creationDate, `repoData`, the requests' count, first and last prompt, latest activity):
other lines are never decoded, and a line over MAX_LINE is scanned in bounds.
`OperationLogs` keeps each file's replay, so that an append costs only the appended bytes;
the last reply is read from the file's tail. `Session` also takes the older flat `.json`
snapshot, which the adapter reads itself.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tracesd.capture.adapters._docs import decode_at
from tracesd.capture.adapters._files import MAX_LINE, SessionFile, decode_line, tail_records
from tracesd.capture.adapters._text import latest, preview, title, to_ms
from tracesd.errors import ParseError
from tracesd.models import GitInfo

_OP = re.compile(rb'\s*\{\s*"kind"\s*:\s*(\d+)\s*(?:,\s*"k"\s*:\s*(\[[^\]]*\]))?')
_LAST_I = re.compile(rb',\s*"i"\s*:\s*(\d+)\s*\}\s*$')
_REQUEST = re.compile(rb'"requestId"\s*:\s*"[^"\\]*"\s*,\s*"timestamp"\s*:\s*(\d+)')
_MESSAGE = re.compile(rb'"message"\s*:\s*\{\s*"text"\s*:\s*"')
_PENDING = re.compile(rb'"pendingRequests"\s*:')
_REQUESTS = re.compile(rb'"requests"\s*:\s*\[')
#: what is kept of a line longer than MAX_LINE, and how a long line is scanned
_PREFIX = 64 * 1024
_SCAN = 1024 * 1024
_OVERLAP = 512
#: replayed logs remembered (about a kilobyte each)
_CACHED_LOGS = 4096


@dataclass(slots=True)
class Session:
    """What a trace needs of a session; for a log, also where its replay stopped."""

    session_id: str | None = None
    created: int | None = None
    repo: GitInfo | None = None
    count: int = 0  # requests
    first: str | None = None  # title of the first request
    last: str | None = None  # preview of the last request
    last_ts: int | None = None  # the latest request start or end ever seen
    reply: str | None = None  # preview of the last reply (from the tail)
    model: str | None = None  # the first request's `modelId` (what the Traces CLI sends)
    offset: int = 0
    mark: bytes = b""  # the bytes just before `offset`, to recognise a rewritten file
    snapshot: bool = False
    ops: int = 0
    garbage: int = 0
    binary: bool = False
    oversize: int = 0

    def load(self, value: Any) -> None:
        """A full snapshot (kind 0, or a flat `.json` document)."""
        if not isinstance(value, dict):
            return
        self.snapshot = True
        sid = value.get("sessionId")
        self.session_id = sid if isinstance(sid, str) and sid else self.session_id
        self.created = to_ms(value.get("creationDate")) or self.created
        self.repo = _git(value.get("repoData"))
        self.reset(value.get("requests"))

    def reset(self, requests: Any) -> None:
        self.count, self.first, self.last, self.model = 0, None, None, None
        self.push(requests if isinstance(requests, list) else [], None)

    def push(self, items: Any, start: Any) -> None:
        if isinstance(start, int) and 0 <= start < self.count:
            self.count = start
            self.first = self.first if start else None
            self.model = self.model if start else None
            self.last = None  # the new last request is not known (until the next push)
        for item in items if isinstance(items, list) else []:
            self.put(self.count, item)

    def put(self, index: int, request: Any) -> None:
        if index > self.count or not isinstance(request, dict):
            return
        self.count = max(self.count, index + 1)
        if index == 0:
            self.set_model(request.get("modelId"))
        self.text(index, request.get("message"))
        self.stamp(request.get("timestamp"), request.get("modelState"))

    def stamp(self, started: Any, state: Any) -> None:
        """A request's start, and the end of its response (`modelState.completedAt`)."""
        ended = state.get("completedAt") if isinstance(state, dict) else None
        self.last_ts = latest(self.last_ts, to_ms(started), to_ms(ended))

    def set_model(self, value: Any) -> None:
        self.model = value if isinstance(value, str) and value.strip() else None

    def text(self, index: int, message: Any) -> None:
        text = _message_text(message)
        if index == 0:
            self.first = title(text)
        if index == self.count - 1:
            self.last = preview(text)

    def apply(self, kind: int, k: Sequence[Any], v: Any, i: Any = None) -> None:
        """One operation of the log, as far as it touches what we keep."""
        head = k[0]
        n = k[1] if len(k) > 1 and isinstance(k[1], int) else -1
        if head == "sessionId" and kind == 1 and isinstance(v, str) and v:
            self.session_id = v
        elif head == "creationDate" and kind == 1:
            self.created = to_ms(v) or self.created
        elif head == "repoData":
            self.repo = _git(v) if kind == 1 else None
        elif head != "requests":
            return
        elif len(k) == 1:
            if kind == 2:
                self.push(v, i)
            else:
                self.reset(v if kind == 1 else [])
        elif len(k) == 2 and kind == 1:
            self.put(n, v)
        elif len(k) >= 3 and kind == 1 and 0 <= n < self.count:
            if k[2] in ("timestamp", "modelState"):
                self.stamp(v if k[2] == "timestamp" else None, v)
            elif tuple(k[2:]) == ("modelId",) and n == 0:
                self.set_model(v)
            elif tuple(k[2:]) == ("message",):
                self.text(n, v)
            elif tuple(k[2:]) == ("message", "text"):
                self.text(n, {"text": v})


def _relevant(kind: int, k: Any, long: bool) -> bool:
    """Whether a log line changes what we keep (anything else is never decoded). A huge
    line deeper than a request (a giant message edit) is passed over: we keep what we know."""
    if kind == 0:
        return True
    if not isinstance(k, list | tuple) or not k or kind not in (1, 2, 3):
        return False
    if k[0] in ("sessionId", "creationDate", "repoData"):
        return len(k) == 1 and kind != 2
    if k[0] != "requests":
        return False
    return len(k) <= 2 or (
        kind == 1 and not long and k[2] in ("timestamp", "modelState", "message", "modelId")
    )


class OperationLogs:
    """Replayed operation logs by path. A log that only grew is replayed from where the
    last read stopped; one that shrank or was rewritten (compacted) from its start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, Session] = OrderedDict()

    def read(self, path: str, f: SessionFile) -> Session | None:
        with self._lock:
            known = self._seen.get(path)
        state = Session()
        if (
            known is not None
            and known.offset <= f.size
            and known.mark == f.read_at(known.offset - len(known.mark), len(known.mark))
        ):
            state = replace(known)  # it only grew since: replay what was appended
        _replay(f, state)
        with self._lock:
            self._seen[path] = state
            self._seen.move_to_end(path)
            while len(self._seen) > _CACHED_LOGS:
                self._seen.popitem(last=False)
        if not state.snapshot:
            _explain(f, state)
            return None
        if state.count == 0:
            return None  # no request yet: not a trace
        state = replace(state, reply=_last_reply(f, state.count - 1))
        return state


def _replay(f: SessionFile, state: Session) -> None:
    kind: Any
    for start, end, data in _lines(f, state.offset):
        state.offset = end + 1
        long = end - start > MAX_LINE
        found = _OP.match(data)
        record: dict[str, Any] | None = None
        if found is not None:
            kind, k = int(found[1]), _path(found[2])
        elif not long and (record := decode_line(data)) is not None:
            kind, k = record.get("kind"), record.get("k")
        else:
            state.oversize += long
            state.garbage += not long
            state.binary = state.binary or b"\x00" in data
            continue
        if not isinstance(kind, int) or not _relevant(kind, k, long):
            state.ops += 1
            continue
        if long:
            v, i = _scan_long(f, start, end, kind, k)
        elif (record := record or decode_line(data)) is not None:
            v, i = record.get("v"), record.get("i")
        else:
            state.garbage += 1
            continue
        state.ops += 1
        if kind == 0:
            state.load(v)
        elif state.snapshot and isinstance(k, list | tuple):
            state.apply(kind, k, v, i)
    if state.offset:
        state.mark = f.read_at(max(0, state.offset - 64), min(64, state.offset))


def _lines(f: SessionFile, offset: int) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, bytes) of each complete line from `offset`, `end` being its newline.
    A line longer than MAX_LINE comes with only its first _PREFIX bytes."""
    if f.size - offset <= _SCAN:  # most logs: one read, split at once
        data = f.read_at(offset, f.size - offset)
        start = offset
        for line in data.split(b"\n")[:-1]:  # the last piece has no newline yet
            end = start + len(line)
            if line.strip():
                yield start, end, line if len(line) <= MAX_LINE else line[:_PREFIX]
            start = end + 1
        return
    start = pos = offset
    pending = bytearray()
    while pos < f.size:
        chunk = f.read_at(pos, min(_SCAN, f.size - pos))
        if not chunk:
            break
        at = 0
        while True:
            newline = chunk.find(b"\n", at)
            stop = len(chunk) if newline < 0 else newline
            if len(pending) <= MAX_LINE:
                pending += chunk[at : min(stop, at + MAX_LINE + 1 - len(pending))]
            if newline < 0:
                break
            end = pos + newline
            data = bytes(pending if end - start <= MAX_LINE else pending[:_PREFIX])
            if data.strip():
                yield start, end, data
            pending.clear()
            at = newline + 1
            start = pos + at
        pos += len(chunk)


def _scan_long(f: SessionFile, start: int, end: int, kind: int, k: Any) -> tuple[Any, Any]:
    """A snapshot or requests too long to decode, read in bounds: the top-level fields
    before `"requests"`, each request's timestamp and the first message after it (VS Code
    writes a request's `message` after its `response`)."""
    requests: list[dict[str, Any]] = []
    pos = start
    while pos < end:
        chunk = f.read_at(pos, min(_SCAN + _OVERLAP, end - pos))
        last = pos + len(chunk) >= end
        limit = len(chunk) if last else len(chunk) - _OVERLAP
        pending = _PENDING.search(chunk) if kind == 0 else None
        stop = pending.start() if pending is not None and pending.start() < limit else limit
        hits = [*_REQUEST.finditer(chunk), *_MESSAGE.finditer(chunk)]
        for hit in sorted((h for h in hits if h.start() < stop), key=lambda h: h.start()):
            if hit.re is _REQUEST:
                requests.append({"timestamp": int(hit[1])})
            elif requests and "message" not in requests[-1]:
                requests[-1]["message"] = {"text": _string_at(f, pos + hit.end() - 1)}
        if stop < limit or last:
            break
        pos += limit
    if kind != 0:
        tail = f.read_at(max(start, end - 64), min(64, end - start))
        found = _LAST_I.search(tail)
        if tuple(k) == ("requests",):
            return requests, int(found[1]) if found else None
        return (requests[0] if requests else None), None
    head = f.read_at(start, min(_PREFIX, end - start))
    cut = _REQUESTS.search(head)
    text = head[: cut.start() if cut else len(head)].decode("utf-8", "ignore")
    snapshot: dict[str, Any] = {"requests": requests}
    for key in ("sessionId", "creationDate", "repoData"):
        at = re.search(rf'"{key}"\s*:', text)
        value = decode_at(text, at.end()) if at else None
        if value is not None:
            snapshot[key] = value[0]
    return snapshot, None


def _string_at(f: SessionFile, quote: int) -> str | None:
    """The JSON string whose opening quote is at byte `quote` (its first 16 KB at most)."""
    raw = f.read_at(quote, 16 * 1024).decode("utf-8", "ignore")
    found = decode_at(raw, 0)
    if found is not None:
        return found[0] if isinstance(found[0], str) else None
    body = re.sub(r"\\(u[0-9a-fA-F]{0,3})?$", "", raw[1:])
    try:
        return str(json.loads('"' + body + '"'))
    except ValueError:
        return None


def _last_reply(f: SessionFile, index: int) -> str | None:
    """The last markdown of the latest request's response, from the file's tail."""
    for record in tail_records(f):
        kind, k, v = record.get("kind"), record.get("k"), record.get("v")
        if kind == 0:
            requests = v.get("requests") if isinstance(v, dict) else None
            v = requests[-1] if isinstance(requests, list) and requests else None
        elif kind == 2 and k == ["requests"]:
            v = v[-1] if isinstance(v, list) and v else None
        elif kind in (1, 2) and k == ["requests", index, "response"]:
            v = {"response": v}
        elif not (kind == 1 and k == ["requests", index]):
            continue
        found = reply_text(v.get("response")) if isinstance(v, dict) else None
        if found is not None or kind == 0 or k == ["requests"]:
            return found
    return None


def reply_text(parts: Any) -> str | None:
    """The last markdown part of a response (a string in the oldest builds)."""
    for part in reversed(parts if isinstance(parts, list) else []):
        if isinstance(part, dict) and part.get("kind", "markdownContent") != "markdownContent":
            continue
        value = part.get("value") if isinstance(part, dict) else part
        if isinstance(value, str) and (found := preview(value)):
            return found
    return None


def _explain(f: SessionFile, state: Session) -> None:
    """Why a log yielded no snapshot: nothing yet (a half-written first line), or bad."""
    for wrong, why, what in (
        (f.size == 0, "empty", "empty file"),
        (state.ops > 0, "malformed", "operation log without an initial snapshot"),
        (state.binary, "binary", "binary content, no JSON records"),
        (state.garbage > 0, "malformed", "no valid JSON records"),
        (state.oversize > 0, "oversize", f"only lines longer than {MAX_LINE} bytes"),
    ):
        if wrong:
            raise ParseError(why, f"{what}: {f.path!r}")


def _message_text(message: Any) -> str | None:
    text: Any = message  # the oldest builds stored the prompt as a plain string
    if isinstance(message, dict):
        text = message.get("text")
        if not isinstance(text, str) or not text.strip():
            parts = message.get("parts")
            texts = [p.get("text") for p in parts or () if isinstance(p, dict)]
            text = "".join(t for t in texts if isinstance(t, str))
    return text.strip() or None if isinstance(text, str) else None


def _git(value: Any) -> GitInfo | None:
    """`repoData`, which VS Code records when a chat's first request is sent."""
    if not isinstance(value, dict) or value.get("workspaceType") == "plain-folder":
        return None
    fields = (value.get(k) for k in ("remoteUrl", "localBranch", "localHeadCommit"))
    info = GitInfo(*(v if isinstance(v, str) and v else None for v in fields))
    return None if info.empty else info


@functools.lru_cache(maxsize=4096)
def _path(raw: bytes | None) -> tuple[Any, ...] | None:
    """A log line's `k` (cached: a log names the same few paths thousands of times)."""
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return tuple(value) if isinstance(value, list) else None
