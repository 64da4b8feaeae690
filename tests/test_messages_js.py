# ruff: noqa: E501 -- a table of JavaScript expressions and their ports, one case a line pair
"""JavaScript's value rules for the ported CLI readers (tracesd/messages/readers/_js.py).

Every case is a JavaScript expression and the Python that ports it; EXPECTED is what Bun
(the runtime of the real CLI binary) gives for the expression. One test checks our Python
against EXPECTED (no CLI needed); one runs all the expressions in the CLI binary's own Bun
(`BUN_BE_BUN=1`), so the table is Bun's and not our guess. Both run in Asia/Kolkata (UTC+05:30)
so that local time shows where it is read.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tracescli import require_traces_cli
from tracesd.messages.readers import _js

ZONE = "Asia/Kolkata"
STAMP_NS = 1795168521123456789
NUMBER_TEXTS = [" 0x1F ", "", "5.", ".5", "\u00a012\u00a0", "\ufeff12", "\x1c12", "1_000",
                "\u0661\u0662", "0x_1f", "-0x1F", "0o9", "0b101", "+Infinity", "-Infinity",
                "inf", "1e400", "1e-7"]  # fmt: skip
NUMBERS = [123456789012345680000.0, 1e21, 0.000001, 1e-7, -1.5e-10, 2.0**53 + 2, 1e16,
           3.141471703767915e18, 0.1, -0.0, 5.0, 1795168521000.0, 123.456,
           math.nan, math.inf, -math.inf]  # fmt: skip
DATES = ["2026-11-20 09:55:21Z", "Thu, 20 Nov 2026 09:55:21 GMT", "2026-11-20T09:55:21.123456Z",
         "2026-11-20T09:55:21+0200", "2026-11-20T09:55:21+02:00", "2026-11", "2026",
         "2026-11-20T24:00:00Z", "2026-11-20t09:55:21z", "2026-11-31T00:00:00Z",
         "2026-02-30T00:00:00Z", "+002026-11-20T09:55:21Z", "2026-11-20T09:55Z",
         "2026-11-20T09:55:21", "2026-11-20 09:55", "2026-11-20",
         "2026-11-32T00:00:00Z", "2026-13-01T00:00:00Z", "soon", " 2026-11-20T09:55:21Z",
         "2026-11-20T09:55:21,5Z", "2026-11-20T25:00:00Z", "2026-11-20T09:60:00Z",
         "2026-11-20T09:55:21+02", "20261120T095521Z", "2026-W47-5"]  # fmt: skip
#: integral doubles (Python's json writes 1e-07 where JavaScript writes 1e-7: not plain's)
PLAIN = [123456789012345680000.0, 1e21, 2.0**53 + 2, 1e16, 3.141471703767915e18, 0.1, -0.0,
         5.0, 1795168521000.0, 123.456]  # fmt: skip
TEXTS = ["abcdef", "abc", "ab\U0001f600cd"]
STAMPS = [1795168521, 1795168521.5, 1795168521123, 999999999999, "1795168521", " 0x10 ", "",
          "1795168521123", "2026-11-20T09:55:21Z", "2026-11-20T09:55:21", "soon", "1e400"]  # fmt: skip
U = _js.UNDEFINED


def _dates(parse: Callable[[str], int | None], texts: list[str]) -> list[Any]:
    return [math.nan if (ms := parse(t)) is None else ms for t in texts]


def _values(*values: Any) -> list[Any]:
    return list(values)


def _raises(call: Callable[[str], Any], text: str) -> Any:
    try:
        return call(text)
    except _js.NotJson:
        return "throws"


#: id -> (JavaScript expression, in which `dir` is a directory with doc.json and stamped;
#: the Python port, given that directory)
CASES: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "get": ('[({a: 1})["b"], ("x")?.b, ({a: 1}).a].map(String)',
            lambda d: [_js.string(_js.get(v, k)) for v, k in (({"a": 1}, "b"), ("x", "b"), ({"a": 1}, "a"))]),
    "defined": ("JSON.stringify({a: undefined, b: null, c: 1})",
                lambda d: _js.stringify(_js.defined({"a": U, "b": None, "c": 1}))),
    "truthy": ('[[], {}, "0", 0, NaN, "", null, undefined, false, -1, 0.5].map(v => !!v)',
               lambda d: [_js.truthy(v) for v in _values([], {}, "0", 0, math.nan, "", None, U, False, -1, 0.5)]),
    "nullish": ('[null, undefined, 0, "", false].map(v => (v ?? "fell") === "fell")',
                lambda d: [_js.nullish(v) for v in (None, U, 0, "", False)]),
    "trim": ('"\\ufeff\\u3000\\u2028 a b\\x1c\\x85\\u00a0".trim()',
             lambda d: _js.trim("\ufeff\u3000\u2028 a b\x1c\x85\u00a0")),
    "squeeze": ('" a \\n\\t b\\u00a0\\u00a0c\\x1c ".replace(/\\s+/g, " ").trim()',
                lambda d: _js.squeeze(" a \n\t b\u00a0\u00a0c\x1c ")),
    "utf16_length": ('"a\\u{1F600}\\u00e9".length', lambda d: _js.utf16_length("a\U0001f600\u00e9")),
    "slice16": ('["ab\\u{1F600}c".slice(0, 3), "abc".slice(0, 10), "abc".slice(0, 0)]',
                lambda d: [_js.slice16("ab\U0001f600c", 3), _js.slice16("abc", 10), _js.slice16("abc", 0)]),
    "string": ('[null, undefined, true, 1e21, 1e-7, 0.1, -0, [1, null, [2, undefined], "a"], {}].map(v => `${v}`)',
               lambda d: [_js.string(v) for v in _values(None, U, True, 1e21, 1e-7, 0.1, -0.0, [1, None, [2, U], "a"], {})]),
    "is_number": ('[1, 1.5, true, "1", null].map(v => typeof v === "number")',
                  lambda d: [_js.is_number(v) for v in (1, 1.5, True, "1", None)]),
    "is_finite": ('[1, Infinity, NaN, "1", false].map(v => Number.isFinite(v))',
                  lambda d: [_js.is_finite(v) for v in (1, math.inf, math.nan, "1", False)]),
    "to_number": (f"{json.dumps(NUMBER_TEXTS)}.map(Number)",
                  lambda d: [_js.to_number(t) for t in NUMBER_TEXTS]),
    "number_text": (f"[{', '.join(map(repr, NUMBERS))}, 2 ** 60].map(String)".replace("nan", "NaN").replace("inf", "Infinity"),
                    lambda d: [_js.number_text(n) for n in [*NUMBERS, 2**60]]),
    "plain": (f"JSON.stringify([{', '.join(map(repr, PLAIN))}])",
              lambda d: json.dumps([_js.plain(n) for n in PLAIN], separators=(",", ":"))),
    "round_half_up": ("[0.49999999999999994, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -2.6].map(v => Math.round(v) + 0)",
                      lambda d: [_js.round_half_up(v) for v in (0.49999999999999994, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -2.6)]),
    "to_fixed": ("[0.25, 0.35, 1.45, 256 / 1024, 2.5, 1e-10].map(v => v.toFixed(1))",
                 lambda d: [_js.to_fixed(v, 1) for v in (0.25, 0.35, 1.45, 256 / 1024, 2.5, 1e-10)]),
    "parse_json": ('JSON.stringify(JSON.parse("[12345678901234567891, 1.0, 2.5e3, 1e21, -0, 9007199254740993, 0.5]"))',
                   lambda d: json.dumps(_js.parse_json("[12345678901234567891, 1.0, 2.5e3, 1e21, -0, 9007199254740993, 0.5]"), separators=(",", ":"))),
    "parse_json_refuses": ('["[NaN]", "\\ufeff{}", "[Infinity]", "{\\"a\\": 1,}"].map(t => { try { return JSON.parse(t) } catch { return "throws" } })',
                           lambda d: [_raises(_js.parse_json, t) for t in ("[NaN]", "\ufeff{}", "[Infinity]", '{"a": 1,}')]),
    "read_json": ('JSON.stringify(JSON.parse(require("fs").readFileSync(dir + "/doc.json", "utf-8")))',
                  lambda d: _js.stringify(_js.read_json(str(d / "doc.json")))),
    "stringify": ('JSON.stringify({b: 1, 10: 2, 2: 3, "01": 4, x: "\\ud800\\n\\u0001\\u007f\\u00e9\\"", u: undefined, l: [undefined, 1e-7, NaN]})',
                  lambda d: _js.stringify({"b": 1, "10": 2, "2": 3, "01": 4, "x": '\ud800\n\x01\x7f\u00e9"', "u": U, "l": [U, 1e-7, math.nan]})),
    "stringify_indented": ("JSON.stringify({a: [1, {}], b: [], c: {d: 2 ** 60}}, null, 2)",
                           lambda d: _js.stringify({"a": [1, {}], "b": [], "c": {"d": 2**60}}, 2)),
    "object_values": ("Object.values({b: 1, 10: 2, 2: 3, 4294967295: 4, a: 5})",
                      lambda d: _js.object_values({"b": 1, "10": 2, "2": 3, "4294967295": 4, "a": 5})),
    "date_parse": (f"{json.dumps(DATES)}.map(t => Date.parse(t))", lambda d: _dates(_js.date_parse, DATES)),
    # deliberately not Date.parse for a zoneless time: read as UTC (see claude_code.py)
    "date_time": ('[1795168521000.9, -1.5, 8.64e15 + 1, "2026-11-20", null, true, [2026], {}, undefined].map(v => new Date(v).getTime())',
                  lambda d: _dates(_js.date_time, [1795168521000.9, -1.5, 8.64e15 + 1, "2026-11-20", None, True, [2026], {}, U])),  # type: ignore[list-item]
    "now_ms": ("Math.abs(Date.now() - Number(process.env.PY_NOW_MS)) < 600000", lambda d: True),
    "mtime_ms": ('[require("fs").statSync(dir + "/stamped").mtimeMs, 0]',
                 lambda d: [_js.mtime_ms(str(d / "stamped")), _js.mtime_ms(str(d / "absent"))]),
    "pick_string": ('pickString([null, 3, " \\u00a0", " \\ufeffa b ", "c"]) ?? null',
                    lambda d: _js.pick_string(None, 3, " \u00a0", " \ufeffa b ", "c")),
    "truncate": (f"{json.dumps(TEXTS)}.map(t => truncateText(t, 4))",
                 lambda d: [_js.truncate(t, 4) for t in TEXTS]),
    "record": ('[{a: 1}, {}, [], null, "a", 1].map(v => asRecord(v) ?? "none")',
               lambda d: [r if (r := _js.record(v)) is not None else "none" for v in _values({"a": 1}, {}, [], None, "a", 1)]),
    "first": ('[null ?? undefined ?? 0 ?? 1, undefined ?? "" ?? "x", null ?? false, null ?? undefined ?? null]',
              lambda d: [_js.first(None, U, 0, 1), _js.first(U, "", "x"), _js.first(None, False), _js.first(None, U, None)]),
    "timestamp": (f"{json.dumps(STAMPS)}.concat([NaN, Infinity, null, true]).map(v => parseTimestamp(v, -1))",
                  lambda d: [_js.timestamp(v, -1) for v in [*STAMPS, math.nan, math.inf, None, True]]),
}  # fmt: skip

#: the CLI's own helpers, as its bundle writes them
_PRELUDE = """
const pickString = (e) => { for (let t of e) { if (typeof t !== "string") continue; let a = t.trim(); if (a) return a } return };
const asRecord = (e) => { if (!e || typeof e !== "object" || Array.isArray(e)) return; return e };
const parseTimestamp = (e, t) => { if (typeof e === "number" && Number.isFinite(e)) return e < 1000000000000 ? e * 1000 : e; if (typeof e === "string") { let a = Number(e); if (Number.isFinite(a)) return a < 1000000000000 ? a * 1000 : a; let r = Date.parse(e); if (!Number.isNaN(r)) return r } return t };
const truncateText = (e, t) => { if (e.length <= t) return e; return e.substring(0, Math.max(0, t - 1)) + "\\u2026" };
const plain = (v) => typeof v === "number" && !Number.isFinite(v) ? String(v) : Array.isArray(v) ? v.map(plain) : v;
const dir = process.env.CASE_DIR;
const out = {};
"""


def _plain(value: Any) -> Any:
    """A result as JSON can hold it (NaN and the infinities as JavaScript names them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return _js.number_text(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _bun_script() -> str:
    lines = [_PRELUDE]
    for name, (expression, _) in CASES.items():
        lines.append(f"out[{json.dumps(name)}] = plain((() => {expression})());")
    lines.append("console.log(JSON.stringify(out));")
    return "\n".join(lines)


@pytest.fixture
def case_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The cases' files, with Python's local time in ZONE for as long as the test runs."""
    (tmp_path / "doc.json").write_text('{"z": [1.0, 1e21, "\\u00e9"], "3": 2.5}', "utf-8")
    (tmp_path / "stamped").write_bytes(b"")
    os.utime(tmp_path / "stamped", ns=(STAMP_NS, STAMP_NS))
    monkeypatch.setenv("TZ", ZONE)
    time.tzset()
    try:
        yield tmp_path
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("name", list(CASES))
def test_each_rule_gives_what_bun_gives(name: str, case_dir: Path) -> None:
    _, port = CASES[name]
    assert _plain(port(case_dir)) == EXPECTED[name]


def test_the_expected_values_are_buns(
    case_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    binary = require_traces_cli()
    home = tmp_path_factory.mktemp("home")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "BUN_BE_BUN": "1",
           "TZ": ZONE, "CASE_DIR": str(case_dir), "PY_NOW_MS": str(_js.now_ms())}  # fmt: skip
    done = subprocess.run(
        [str(binary), "-e", _bun_script()], env=env, capture_output=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == EXPECTED


def test_every_public_rule_has_a_case() -> None:
    public = {n for n, v in vars(_js).items() if callable(v) and not n.startswith("_")}
    public -= {"Any", "TypeGuard", "Undefined", "NotJson", "datetime", "timedelta", "Decimal"}
    checked = {n for n in public if any(n in name for name in CASES)}
    assert public - checked == set()


#: what Bun gives for each case (test_the_expected_values_are_buns re-checks it)
EXPECTED: dict[str, Any] = {
    "get": ["undefined", "undefined", "1"],
    "defined": '{"b":null,"c":1}',
    "truthy": [True, True, True, False, False, False, False, False, False, True, True],
    "nullish": [True, True, False, False, False],
    "trim": "a b\x1c\x85",
    "squeeze": "a b c\x1c",
    "utf16_length": 4,
    "slice16": ["ab\ud83d", "abc", ""],
    "string": [
        "null",
        "undefined",
        "true",
        "1e+21",
        "1e-7",
        "0.1",
        "0",
        "1,,2,,a",
        "[object Object]",
    ],
    "is_number": [True, True, False, False, False],
    "is_finite": [True, False, False, False, False],
    "to_number": [
        31,
        0,
        5,
        0.5,
        12,
        12,
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        5,
        "Infinity",
        "-Infinity",
        "NaN",
        "Infinity",
        1e-07,
    ],
    "number_text": [
        "123456789012345680000",
        "1e+21",
        "0.000001",
        "1e-7",
        "-1.5e-10",
        "9007199254740994",
        "10000000000000000",
        "3141471703767915000",
        "0.1",
        "0",
        "5",
        "1795168521000",
        "123.456",
        "NaN",
        "Infinity",
        "-Infinity",
        "1152921504606847000",
    ],
    "plain": "[123456789012345680000,1e+21,9007199254740994,10000000000000000,3141471703767915000,0.1,0,5,1795168521000,123.456]",
    "round_half_up": [0, 1, 2, 3, 0, -1, -2, -3],
    "to_fixed": ["0.3", "0.3", "1.4", "0.3", "2.5", "0.0"],
    "parse_json": "[12345678901234567000,1,2500,1e+21,0,9007199254740992,0.5]",
    "parse_json_refuses": ["throws", "throws", "throws", "throws"],
    "read_json": '{"3":2.5,"z":[1,1e+21,"é"]}',
    "stringify": '{"2":3,"10":2,"b":1,"01":4,"x":"\\ud800\\n\\u0001\x7fé\\"","l":[null,1e-7,null]}',
    "stringify_indented": '{\n  "a": [\n    1,\n    {}\n  ],\n  "b": [],\n  "c": {\n    "d": 1152921504606847000\n  }\n}',
    "object_values": [3, 2, 1, 4, 5],
    "date_parse": [
        1795168521000,
        1795168521000,
        1795168521123,
        1795161321000,
        1795161321000,
        1793491200000,
        1767225600000,
        1795219200000,
        1795168521000,
        1796083200000,
        1772409600000,
        1795168521000,
        1795168500000,
        1795148721000,
        1795148700000,
        1795132800000,
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        "NaN",
        "NaN",
    ],
    "date_time": [1795168521000, -1, "NaN", 1795132800000, 0, 1, 1767225600000, "NaN", "NaN"],
    "now_ms": True,
    "mtime_ms": [1795168521123.4568, 0],
    "pick_string": "a b",
    "truncate": ["abc…", "abc", "ab\ud83d…"],
    "record": [{"a": 1}, {}, "none", "none", "none", "none"],
    "first": [0, "", False, None],
    "timestamp": [
        1795168521000,
        1795168521500,
        1795168521123,
        999999999999000,
        1795168521000,
        16000,
        0,
        1795168521123,
        1795168521000,
        1795148721000,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
    ],
}
