"""Cursor's messages, read as the real CLI reads them (its `cursor` adapter).

The CLI reads a composer from the IDE's global store when that store lists it (a
`composerData:<id>` row whose `fullConversationHeadersOnly` is not empty), else from its
agent transcript: so do we, whichever of the two our capture stored as the trace's source.
The global store is re-read whole (one composer row and its `bubbleId:<id>:<bubble>` rows),
skipped while the store's files are unchanged (`_cursor_global`); a transcript is read by
its appended lines (`_cursor_transcript`). Cursor CLI chats (`chats/<md5>/<id>/store.db`)
the CLI does not read at all: they have no messages to upload.
"""

from __future__ import annotations

import os

from tracesd.capture.adapters import _sqlite
from tracesd.errors import ParseError
from tracesd.messages.readers import Position, Read, Unreadable, _cursor_global, _js, _lines
from tracesd.messages.readers._cursor_transcript import Transcript
from tracesd.models import Trace

IDE_DB = "state.vscdb"
_USER_DIRS = (
    (".config", "Cursor", "User"),
    ("Library", "Application Support", "Cursor", "User"),
)


class CursorReader:
    def read(self, trace: Trace, position: Position) -> Read:
        source = trace.source_path or ""
        if os.path.basename(source) == "store.db":
            return Read([], position)  # a Cursor CLI chat: the Traces CLI reads none
        database, transcript = _sources(source, trace.id)
        try:
            composer = _cursor_global.listed_composer(database, trace.id) if database else None
        except ParseError as error:
            raise Unreadable(f"{database}: {error}") from error
        if composer is not None and database is not None:
            return _cursor_global.read(database, trace.id, position)
        if transcript is None:
            raise Unreadable(f"no Cursor session {trace.id} the CLI can read")
        return _read_transcript(transcript, position)


# -- where a composer is -----------------------------------------------------------------


def _sources(source: str, composer: str) -> tuple[str | None, str | None]:
    """The global store and the agent transcript that may hold `composer`."""
    if os.path.basename(_sqlite.database_of(source)) == IDE_DB:
        database = _sqlite.database_of(source)
        user = os.path.dirname(os.path.dirname(database))  # <base>/Cursor/User
        base = os.path.dirname(os.path.dirname(user))  # ~/.config, ~/Library/Application Support
        home = os.path.dirname(os.path.dirname(base) if base.endswith("Support") else base)
        return database, _find_transcript(home, composer)
    marker = os.sep + os.path.join(".cursor", "projects") + os.sep
    home = source.rpartition(marker)[0] if marker in source else ""
    transcript = source if source.endswith((".jsonl", ".json")) else None
    if not home:
        return None, transcript
    stores = (os.path.join(home, *d, "globalStorage", IDE_DB) for d in _USER_DIRS)
    return next((s for s in stores if os.path.isfile(s)), None), transcript


def _find_transcript(home: str, composer: str) -> str | None:
    projects = os.path.join(home, ".cursor", "projects")
    try:
        slugs = sorted(os.listdir(projects))
    except OSError:
        return None
    for slug in slugs:
        folder = os.path.join(projects, slug, "agent-transcripts")
        for name in (f"{composer}.jsonl", os.path.join(composer, f"{composer}.jsonl")):
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    return None


# -- the transcript ----------------------------------------------------------------------


def _read_transcript(path: str, position: Position) -> Read:
    if position.state.get("source") != "transcript":
        position = Position()
    lines = _lines.appended(path, position)
    mtime_ms = _js.mtime_ms(path)  # the file was just read (an error raised Unreadable)
    state = {} if lines.restarted else position.state
    reading = Transcript.resume(state, mtime_ms)
    for record in lines.records:
        if record is not None:
            reading.read(record)
    after = Position(lines.offset, {"source": "transcript", **reading.state()}, lines.file)
    return Read(reading.events, after, whole=lines.restarted, more=lines.more)
