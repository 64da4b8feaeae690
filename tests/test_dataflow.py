"""Explicit data flow (ARCHITECTURE, rules of the house): arguments in, values out."""

from __future__ import annotations

import ast
from pathlib import Path

import tracesd

PACKAGE = Path(tracesd.__file__).parent


def context_variable_uses(root: Path) -> list[str]:
    """Where a module under `root` imports or reaches for `contextvars` (the standard
    module, or a library's, like `structlog.contextvars`)."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(alias.name for alias in node.names)]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            if any("contextvars" in name.split(".") for name in names):
                found.append(f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}")
    return found


def test_no_module_passes_data_through_context_variables() -> None:
    """What a step needs is an argument and what it found is its return value: a
    context variable (the skipped lines of a read once travelled in one) hides both."""
    assert context_variable_uses(PACKAGE) == []
