"""A VS Code chat session file as one document, read as the CLI reads it (`readSession`).

A `.json` is the document itself. A `.jsonl` is a patch log of it: `{"kind": 0, "v": doc}`
starts it, then `kind` 1 sets the value at path `k`, 2 truncates the array at `k` to `i`
and appends `v`, 3 deletes `k`. A patch can rewrite anything before it, so the document
only exists once the whole log is replayed: the reader re-reads the file whole.
"""

from __future__ import annotations

from typing import Any

from tracesd.messages.readers import _js


class _BadPath(Exception):
    pass


def document(raw: bytes, jsonl: bool) -> dict[str, Any] | None:
    """The session document (None: none, as the CLI finds none and reads no events)."""
    text = raw.decode("utf-8", "replace")
    if not jsonl:
        try:
            value = _js.parse_json(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    doc: Any = None
    for line in text.split("\n"):
        stripped = _js.trim(line)
        if not stripped:
            continue
        try:
            patch = _js.parse_json(stripped)
        except ValueError:
            continue
        if not isinstance(patch, dict):
            continue  # the CLI reads `.kind` of it: undefined, an invalid entry
        kind = patch.get("kind")
        if kind == 0 and not isinstance(kind, bool):
            doc = patch.get("v")
            continue
        if not isinstance(doc, dict | list) or not isinstance(patch.get("k"), list):
            continue
        try:
            doc = _apply(doc, kind, patch)
        except _BadPath:
            continue
    return doc if isinstance(doc, dict) else None


def _apply(doc: Any, kind: Any, patch: dict[str, Any]) -> Any:
    path: list[Any] = patch["k"]
    if kind == 1:
        if not path:
            return patch.get("v")
        container, key = _walk(doc, path)
        _set(container, key, patch.get("v"))
        return doc
    if kind == 2:
        if not path:
            return doc
        container, key = _walk(doc, path)
        current = _get(container, key)
        items = list(current) if isinstance(current, list) else []
        cut = patch.get("i")
        if _js.is_number(cut):
            size = int(cut)
            items = items[:size] + [None] * max(0, size - len(items))
        added = patch.get("v")
        if isinstance(added, list):
            items.extend(added)
        _set(container, key, items)
        return doc
    if kind == 3:
        if not path:
            return None
        container, key = _walk(doc, path)
        _delete(container, key)
        return doc
    return doc


def _walk(doc: Any, path: list[Any]) -> tuple[Any, Any]:
    here = doc
    for step in path[:-1]:
        here = _get(here, step)
        if not isinstance(here, dict | list):
            raise _BadPath
    return here, path[-1]


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, list):
        index = _index(key)
        return container[index] if index is not None and index < len(container) else None
    if isinstance(container, dict):
        return container.get(_name(key))
    return None


def _set(container: Any, key: Any, value: Any) -> None:
    if isinstance(container, list):
        index = _index(key)
        if index is None:
            return  # a named property of an array: not in its JSON
        container.extend([None] * (index + 1 - len(container)))
        container[index] = value
    elif isinstance(container, dict):
        container[_name(key)] = value
    else:
        raise _BadPath


def _delete(container: Any, key: Any) -> None:
    if isinstance(container, list):
        index = _index(key)
        if index is not None and index < len(container):
            container[index] = None  # a hole, as `delete array[i]` leaves
    elif isinstance(container, dict):
        container.pop(_name(key), None)


def _index(key: Any) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int) and key >= 0:
        return key
    if isinstance(key, float) and key.is_integer() and key >= 0:
        return int(key)
    if isinstance(key, str) and key.isdigit() and (key == "0" or not key.startswith("0")):
        return int(key)
    return None


def _name(key: Any) -> str:
    return _js.string(key)
