"""Strings in and out of PostgreSQL, U+0000 included.

PostgreSQL's `text` cannot hold U+0000, which agents' tool output does contain and SQLite
stores. So every string the PostgreSQL storage writes or compares goes in `encode`d and
every string it reads comes out `decode`d, and what the API answers is what it was sent,
on both engines:

- `encode` writes ESCAPE (U+FFFF, a noncharacter: not found in text people exchange) as
  two ESCAPEs and U+0000 as ESCAPE "0". Those codes and every other character form a
  prefix code, so `encode` is injective: equal encodings mean equal strings, and a filter
  compares encoded forms as the API compares strings. A string without either character
  is stored as it is.
- `decode` undoes it (a lone ESCAPE, which `encode` never writes, is kept as it is).

`TextConnection` applies them to one asyncpg connection's parameters (strings and lists
of strings) and rows, so no query of the storage can miss them. JSON text (tokenUsage, a
part's body) never holds a raw U+0000 (JSON writes it `\\u0000`); the escape leaves it
as it is unless it holds U+FFFF, and gives that back too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

ESCAPE = "\uffff"
NUL = "\x00"
_CODES = {ESCAPE: ESCAPE + ESCAPE, NUL: ESCAPE + "0"}
_DECODED = {code: char for char, code in _CODES.items()}
_ENCODED = re.compile(f"{ESCAPE}[{ESCAPE}0]")

Row = tuple[Any, ...]


def encode(text: str) -> str:
    """`text` as PostgreSQL can store it: no U+0000 (injective)."""
    if NUL not in text and ESCAPE not in text:
        return text
    return text.replace(ESCAPE, _CODES[ESCAPE]).replace(NUL, _CODES[NUL])


def decode(text: str) -> str:
    """The string `encode` made `text` from."""
    if ESCAPE not in text:
        return text
    return _ENCODED.sub(lambda found: _DECODED[found[0]], text)


class TextConnection:
    """A pooled asyncpg connection whose string parameters are encoded and whose rows'
    strings are decoded (rows as tuples)."""

    def __init__(self, conn: PoolConnectionProxy[Record]) -> None:
        self._conn = conn

    def transaction(self, *, readonly: bool = False) -> Transaction:
        return self._conn.transaction(readonly=readonly)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [_decoded(row) for row in await self._conn.fetch(sql, *_encoded(args))]

    async def fetchval(self, sql: str, *args: Any) -> Any:
        value = await self._conn.fetchval(sql, *_encoded(args))
        return decode(value) if isinstance(value, str) else value

    async def execute(self, sql: str, *args: Any) -> str:
        return await self._conn.execute(sql, *_encoded(args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, [_encoded(row) for row in rows])


def _encoded(args: Sequence[Any]) -> list[Any]:
    return [_param(arg) for arg in args]


def _param(value: Any) -> Any:
    """A parameter with its strings encoded (a list's too: `= ANY($1::text[])`)."""
    if isinstance(value, str):
        return encode(value)
    if isinstance(value, list):
        return [_param(item) for item in value]
    return value


def _decoded(row: Iterable[Any]) -> Row:
    return tuple(decode(value) if isinstance(value, str) else value for value in row)
