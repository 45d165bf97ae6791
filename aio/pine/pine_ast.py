"""Pine syntax trees for the importer, and the inverse of the aio -> Pine indicator map.

pynescript 0.3 parses in its tool venv (``tools/pine_parse.py --ast``; antlr4 4.13 there,
Hydra's 4.9 here), and the tree comes back as JSON: every node a dict with ``_type``, its
fields, ``lineno`` (1-based) and ``col_offset`` (a byte offset into the UTF-8 line).

The indicator templates are derived from the export mappings themselves
(``IndicatorDef.pine``), so the importer reads exactly the calls the exporter writes.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aio.appconfig import REPO
from aio.errors import ConfigError


class PineImportError(ConfigError):
    """A script (or a part of one) the importer does not translate; names line, column and construct."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None, construct: str = "") -> None:
        self.line, self.col, self.construct = line, col, construct
        super().__init__(message)


def parse_files(paths: list[Path], venv: Path | None = None) -> list[dict]:
    """pynescript's syntax tree of each file, in one tool-venv process (its first parse costs seconds)."""
    from aio.pine.check import tool_python

    py = tool_python(venv)
    out = subprocess.run(
        [str(py), str(REPO / "tools" / "pine_parse.py"), "--ast", *map(str, paths)],
        capture_output=True, text=True, timeout=600,
    )
    if out.returncode != 0:
        raise ConfigError(f"the Pine parser (tools/pine_parse.py in {py.parent.parent}) failed: "
                          f"{out.stderr.strip().splitlines()[-1:] or out.returncode}")
    return json.loads(out.stdout)


def char_col(source_line: str, byte_offset: int) -> int:
    """pynescript's byte offset as a 1-based character column."""
    return len(source_line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore")) + 1


def dotted(node: dict | None) -> str | None:
    """``ta.rsi`` for Attribute(Name(ta), rsi); None for anything but names."""
    if not isinstance(node, dict):
        return None
    if node["_type"] == "Name":
        return node["id"]
    if node["_type"] == "Attribute":
        base = dotted(node["value"])
        return f"{base}.{node['attr']}" if base else None
    return None


# -- the inverse indicator map ------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    kind: str  # "input" | "param" | "literal"
    names: tuple[str, ...] = ()  # input name, or the parameter(s) this argument sets
    text: str = ""  # literal: the exact Pine text the argument must be


@dataclass(frozen=True)
class Template:
    """A Pine call (``ta.rsi(source, length)``) that one aio indicator exports to."""

    indicator: str
    pine: str  # function or variable name, e.g. "ta.rsi", "ta.obv"
    call: bool  # False: a variable like ta.obv / ta.tr
    slots: tuple[Slot, ...]
    fixed: tuple[tuple[str, Any], ...]  # parameters the call implies (ta.stdev: nbdev=1)
    tuple_outputs: tuple[str, ...] | None
    exact: bool


_SIMPLE = re.compile(r"^([A-Za-z_][\w.]*)(?:\((.*)\))?$")


def _probe(idef, sentinel_params: bool) -> Template | None:
    """Call the export mapping with recognisable arguments and read the template off its text."""
    from aio.pine.syntax import number

    inputs = {i: i for i in idef.inputs}  # chart names: what Pine's chart-bound ta.* require
    params: dict[str, str] = {}
    for k, v in idef.params.items():
        if sentinel_params or "period" in k:
            params[k] = f"PARAM__{k}"
        else:
            params[k] = number(v)
    try:
        call = idef.pine(inputs, params)
    except Exception:
        return None
    if call.output_exprs:
        return None
    m = _SIMPLE.match(call.expr.strip())
    if not m:
        return None
    fn, argtext = m.group(1), m.group(2)
    args = [a.strip() for a in argtext.split(",")] if argtext else []
    slots, used = [], set()
    for a in args:
        if a.startswith("PARAM__"):
            slots.append(Slot("param", (a[7:],)))
            used.add(a[7:])
        elif a in idef.inputs:
            slots.append(Slot("input", (a,)))
        else:
            shared = tuple(k for k, v in params.items() if v == a and not v.startswith("PARAM__"))
            if shared:
                slots.append(Slot("param", shared))
                used.update(shared)
            else:
                slots.append(Slot("literal", text=a))
    if any(not re.match(r"^[\w.]+$", s.text) for s in slots if s.kind == "literal"):
        return None
    fixed = tuple((k, v) for k, v in idef.params.items() if k not in used)
    return Template(idef.name, fn, argtext is not None, tuple(slots), fixed, call.tuple_outputs, idef.pine_exact)


@cache
def templates() -> dict[str, list[Template]]:
    """Pine name -> the aio indicators exporting to it, TradingView-exact ones first."""
    from aio.indicators import builtin_indicators

    out: dict[str, list[Template]] = {}
    for name in sorted(builtin_indicators()):
        idef = builtin_indicators()[name]
        if idef.pine is None:
            continue
        seen = set()
        for sentinel in (True, False):
            t = _probe(idef, sentinel)
            if t is not None and (t.slots, t.fixed) not in seen:
                seen.add((t.slots, t.fixed))
                out.setdefault(t.pine, []).append(t)
    for lst in out.values():
        # exact before approximate; a call with more free slots before one fixing parameters
        lst.sort(key=lambda t: (not t.exact, len(t.fixed), t.indicator))
    return out
