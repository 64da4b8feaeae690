"""Editors of the VS Code family (VS Code, Insiders, VSCodium, Cursor, Windsurf): where they
keep their `User` data, and which folder a workspace window had open.

Copilot's chats, Cline's classic tasks, Cursor's IDE store and Amp's old threads all live
under an editor's `User` directory, and name their working directory, if at all, as a
`file://` URI or through the workspace's `workspace.json`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from tracesd.capture.adapters import _roots
from tracesd.safeopen import read_head

if TYPE_CHECKING:  # config validates agent ids against this package
    from tracesd.config import Config

#: the environment variables `user_dirs` reads: an adapter that calls it declares them too
ENV_VARS = ("VSCODE_PORTABLE", "VSCODE_APPDATA", "XDG_CONFIG_HOME")

_JSONC_COMMENT = re.compile(r'("(?:[^"\\]|\\.)*")|//[^\n]*|/\*.*?\*/', re.DOTALL)
_JSONC_COMMA = re.compile(r'("(?:[^"\\]|\\.)*")|,(?=\s*[}\]])')
_WINDOWS_DRIVE = re.compile(r"^/[A-Za-z]:/")
#: side files (workspace.json, .code-workspace) are small; a larger one is not ours
SIDE_FILE_LIMIT = 1024 * 1024


def user_dirs(config: Config, apps: Iterable[str]) -> list[Path]:
    """Each app's `User` directory, as the editors resolve it: `$VSCODE_PORTABLE/user-data`
    for a portable install, else under `$VSCODE_APPDATA` when set, else the platform's
    default: `~/Library/Application Support/<app>/User` on macOS; on Linux
    `$XDG_CONFIG_HOME/<app>/User` and also `~/.config/<app>/User` (the editor's environment
    need not be the daemon's)."""
    apps = list(apps)
    found: list[Path] = []
    portable = config.env_path("VSCODE_PORTABLE")
    if portable is not None:
        found.append(portable / "user-data" / "User")
    appdata = config.env_path("VSCODE_APPDATA")
    if appdata is not None:
        bases = [appdata]
    elif _roots.PLATFORM == "darwin":
        bases = [config.home / "Library" / "Application Support"]
    else:
        configured = config.environ.get("XDG_CONFIG_HOME", "")
        xdg = Path(configured) if os.path.isabs(configured) else None
        bases = [b for b in (xdg, config.home / ".config") if b is not None]
    found += [base / app / "User" for base in bases for app in apps]
    return list(dict.fromkeys(found))


def file_path(uri: Any) -> str | None:
    """A local path from a `file://` URI (percent-decoded), a VS Code URI object
    (`fsPath`/`path`) or an absolute path; None for remote folders (`vscode-remote://`,
    `file://host/share`) and anything else."""
    if isinstance(uri, dict):
        for key in ("fsPath", "path"):
            value = uri.get(key)
            if isinstance(value, str) and value.startswith("/"):
                return os.path.normpath(value)
        return None
    if not isinstance(uri, str) or not uri:
        return None
    if uri.startswith("/"):
        return os.path.normpath(uri)
    try:
        parts = urlsplit(uri)
        path = unquote(parts.path, errors="strict")
    except (ValueError, UnicodeDecodeError):
        return None
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    if _WINDOWS_DRIVE.match(path):
        return path[1:]
    return os.path.normpath(path) if path.startswith("/") else None


def workspace_folder(workspace: str) -> str | None:
    """The folder a workspace window had open, from `<workspace>/workspace.json`: its
    `folder`, or the first folder of the `.code-workspace` file it names (relative paths
    resolved against that file). None for empty windows and remote folders."""
    document = read_json(os.path.join(workspace, "workspace.json"))
    if not isinstance(document, dict):
        return None
    if "folder" in document:
        return file_path(document["folder"])
    config = file_path(document.get("workspace") or document.get("configuration"))
    if config is None:
        return None
    folders = read_json(config, jsonc=True)
    folders = folders.get("folders") if isinstance(folders, dict) else None
    first = folders[0] if isinstance(folders, list) and folders else None
    if not isinstance(first, dict):
        return None
    if isinstance(first.get("path"), str) and first["path"]:
        return os.path.normpath(os.path.join(os.path.dirname(config), first["path"]))
    return file_path(first.get("uri"))


def read_json(path: str, *, jsonc: bool = False, limit: int = SIDE_FILE_LIMIT) -> Any:
    """A small JSON side file; None when missing, too large or not JSON. `jsonc`: comments
    and trailing commas allowed, as in `.code-workspace` files."""
    try:
        data = read_head(path, limit + 1)  # a FIFO or a device is refused, never waited on
    except OSError:
        return None
    if len(data) > limit:
        return None
    text = data.decode("utf-8", "replace")
    for attempt in range(2 if jsonc else 1):
        if attempt:
            text = _JSONC_COMMENT.sub(lambda m: m[1] or "", text)
            text = _JSONC_COMMA.sub(lambda m: m[1] or "", text)
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            pass
    return None
