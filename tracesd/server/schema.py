"""The API document (openapi.json, shipped in the package) and validators compiled from it.

The reference server validates every request body with these, and the tests validate every
payload the client builds with the same ones: one document, one truth.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

import fastjsonschema


class SchemaError(ValueError):
    """A value does not match the API document; `path` is where (`title`, `traces.3`)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


@functools.cache
def document() -> dict[str, Any]:
    text = resources.files("tracesd.server").joinpath("openapi.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@functools.cache
def _compiled(name: str) -> Callable[[Any], Any]:
    # A wrapper whose root holds the components, so "#/components/schemas/..." resolves.
    root = {"$ref": f"#/components/schemas/{name}", "components": document()["components"]}
    validator: Callable[[Any], Any] = fastjsonschema.compile(root)
    return validator


def validate(name: str, value: Any) -> None:
    """Raise SchemaError unless `value` matches components.schemas[name]."""
    try:
        _compiled(name)(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = ".".join(str(p) for p in exc.path[1:])
        message = exc.message.replace("data.", "", 1).replace("data ", "body ", 1)
        raise SchemaError(path, message) from None
