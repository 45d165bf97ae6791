"""Pine syntax trees for the importer, and the inverse of the aio -> Pine indicator map.

pynescript 0.3 parses in its tool venv (``tools/pine_parse.py --ast``; antlr4 4.13 there,
Hydra's 4.9 here), and the tree comes back as JSON: every node a dict with ``_type``, its
fields, ``lineno`` (1-based) and ``col_offset`` (a byte offset into the UTF-8 line).

The indicator templates are derived from the export mappings themselves
(``IndicatorDef.pine`` of built-in and plugin indicators), so the importer reads exactly
what the exporter writes: a call (``ta.rsi(close, n)``), a variable (``ta.obv``) or an
expression around calls (STOCH's ``ta.sma(ta.stoch(close, high, low, k), n)``, TSI's
``100 * ta.tsi(...)``, ROCP's ``ta.roc(...) / 100``), each as a pattern tree.
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


# A pattern is the export's Pine text as a tree the importer matches syntax trees against:
# ("call", "ta.sma", (args...)), ("var", "ta.obv"), ("bin", "*", left, right), ("num", 100.0)
# or ("slot", Slot). Export mappings that write an expression around a call (STOCH's
# ta.sma(ta.stoch(...), n), TSI's 100 * ta.tsi(...), ROCP's ta.roc(...) / 100) are patterns
# like any other, so they read back through the same mechanism.
Pattern = tuple


@dataclass(frozen=True)
class Template:
    """The Pine text (a call, a variable or an expression around calls) one aio indicator exports to."""

    indicator: str
    pine: str  # root of the pattern: function or variable name ("ta.rsi", "ta.obv"), or an operator ("*")
    call: bool  # False: a variable like ta.obv / ta.tr
    slots: tuple[Slot, ...]  # the pattern's leaves, in source order
    fixed: tuple[tuple[str, Any], ...]  # parameters the text implies (ta.stdev: nbdev=1; ta.ema(ta.stoch..): matype=1)
    tuple_outputs: tuple[str, ...] | None
    exact: bool
    pattern: Pattern = ()
    output: str | None = None  # the output this text computes (PineCall.output_exprs); None: the first / the tuple
    free: tuple[str, ...] = ()  # parameters this output does not depend on (only the indicator's other outputs do)

    @property
    def specificity(self) -> int:
        """Pattern nodes below the root that are not slots: a nested form is a closer reading than a bare call."""
        return _count_structure(self.pattern) - 1

    @property
    def anchors(self) -> set[str]:
        """Every Pine function or variable the pattern names."""
        return _names_in(self.pattern)


def _count_structure(p: Pattern) -> int:
    if not p or p[0] == "slot":
        return 0
    if p[0] == "call":
        return 1 + sum(_count_structure(a) for a in p[2])
    if p[0] == "bin":
        return 1 + _count_structure(p[2]) + _count_structure(p[3])
    return 1


def _names_in(p: Pattern) -> set[str]:
    if not p or p[0] in ("slot", "num"):
        return set()
    if p[0] == "call":
        return {p[1]}.union(*(_names_in(a) for a in p[2]))
    if p[0] == "bin":
        return _names_in(p[2]) | _names_in(p[3])
    return {p[1]}


def pattern_text(p: Pattern) -> str:
    """The pattern as Pine, slots by name (for messages and docs)."""
    k = p[0]
    if k == "slot":
        s = p[1]
        return s.text if s.kind == "literal" else s.names[0]
    if k == "num":
        v = p[1]
        return str(int(v)) if float(v).is_integer() else str(v)
    if k == "var":
        return p[1]
    if k == "call":
        return f"{p[1]}({', '.join(pattern_text(a) for a in p[2])})"
    return f"{pattern_text(p[2])} {p[1]} {pattern_text(p[3])}"


_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?)|([A-Za-z_][\w.]*)|(.))")


class _Unparsable(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str, int, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        group = 1 if m.group(1) else 2 if m.group(2) else 3
        kind, val = ("num", "name", "op")[group - 1], m.group(group)
        if kind == "op" and val not in "+-*/(),":
            raise _Unparsable(text)
        out.append((kind, val, m.start(group), m.end()))
        pos = m.end()
    if text[pos:].strip():
        raise _Unparsable(text)
    return out


def _parse_export(text: str, leaf) -> Pattern:
    """The exporter's Pine expression as a pattern; ``leaf(text, in_call)`` classifies names, numbers and arguments."""
    toks = _tokens(text)
    i = 0

    def peek(v: str | None = None) -> bool:
        return i < len(toks) and (v is None or (toks[i][0] == "op" and toks[i][1] == v))

    def take(v: str) -> None:
        nonlocal i
        if not peek(v):
            raise _Unparsable(text)
        i += 1

    def binary(ops: str, operand) -> Pattern:
        """Left-associative operators of one precedence level."""
        nonlocal i
        left = operand()
        while any(peek(op) for op in ops):
            op = toks[i][1]
            i += 1
            left = ("bin", op, left, operand())
        return left

    def expr() -> Pattern:
        return binary("+-", term)

    def term() -> Pattern:
        return binary("*/", atom)

    def atom() -> Pattern:
        nonlocal i
        if not peek():
            raise _Unparsable(text)
        kind, val = toks[i][:2]
        if peek("("):
            i += 1
            inner = expr()
            take(")")
            return inner
        i += 1
        if kind == "num":
            return leaf(val, False) or ("num", float(val))
        if kind != "name":
            raise _Unparsable(text)
        if peek("("):
            i += 1
            args = []
            while not peek(")"):
                a_start = i
                a = expr()
                raw = text[toks[a_start][2]:toks[i - 1][3]].strip()
                args.append(leaf(raw, True) or a)
                if not peek(")"):
                    take(",")
            take(")")
            return ("call", val, tuple(args))
        return leaf(val, False) or ("var", val)

    out = expr()
    if i != len(toks):
        raise _Unparsable(text)
    return out


def _slots(p: Pattern) -> list[Slot]:
    if p[0] == "slot":
        return [p[1]]
    if p[0] == "call":
        return [s for a in p[2] for s in _slots(a)]
    if p[0] == "bin":
        return _slots(p[2]) + _slots(p[3])
    return []


def _outputs(idef, params: dict[str, str]) -> dict[str | None, tuple[str, Any]] | None:
    """Output -> (Pine text, PineCall) of one export; None where the mapping refuses these arguments."""
    try:
        call = idef.pine({i: i for i in idef.inputs}, params)  # chart names: what chart-bound ta.* require
    except Exception:
        return None
    if call.output_exprs:
        return {o: (t, call) for o, t in call.output_exprs.items()}
    return {None: (call.expr, call)}


def _probe_templates(idef) -> list[Template]:
    """Call the export mapping with recognisable arguments and read the templates off its text.

    Parameters become ``PARAM__<name>`` sentinels where the mapping writes them into the
    text. A parameter whose sentinel the mapping refuses chooses *which* Pine function it
    writes (a TA-Lib MA type -> ta.sma/ta.ema/...): its integer values are enumerated, one
    template per choice. Per output (``PineCall.output_exprs``), a parameter the text does
    not depend on is free: only the indicator's other outputs use it.
    """
    from itertools import product

    from aio.pine.syntax import number

    defaults = {k: number(v) for k, v in idef.params.items()}
    sentinel = {k: f"PARAM__{k}" for k in idef.params}
    base = _outputs(idef, defaults)
    if base is None:
        return []
    choosers = [k for k, v in idef.params.items() if isinstance(v, int) and not isinstance(v, bool)
                and _outputs(idef, {**defaults, k: sentinel[k]}) is None]
    values = {k: [v for v in range(14) if _outputs(idef, {**defaults, k: str(v)}) is not None] for k in choosers}
    others = [k for k in idef.params if k not in choosers]

    def used(out: str | None) -> set[str]:
        """Parameters whose value changes this output's text."""
        u = set()
        for k in others:
            got = _outputs(idef, {**defaults, k: sentinel[k]})
            if got is None or got[out][0] != base[out][0]:
                u.add(k)
        for c in choosers:
            if len({(_outputs(idef, {**defaults, c: str(v)}) or {})[out][0] for v in values[c]}) > 1:
                u.add(c)
        return u

    modes = [{k: sentinel[k] for k in others},
             {k: (sentinel[k] if "period" in k else defaults[k]) for k in others}]
    out: list[Template] = []
    seen = set()
    for mode in modes:
        for combo in product(*(values[c] for c in choosers)):
            params = {**defaults, **mode, **{c: str(v) for c, v in zip(choosers, combo)}}
            texts = _outputs(idef, params)
            if texts is None:
                continue
            for o, (text, call) in texts.items():
                t = _template(idef, o, text, call, params, used(o) if call.output_exprs else set(idef.params))
                if t is not None and (t.pattern, t.fixed, t.output) not in seen:
                    seen.add((t.pattern, t.fixed, t.output))
                    out.append(t)
    return out


def _template(idef, output, text, call, params: dict[str, str], used: set[str]) -> Template | None:
    def leaf(raw: str, in_call: bool):
        if raw.startswith("PARAM__"):
            return ("slot", Slot("param", (raw[7:],)))
        if raw in idef.inputs:
            return ("slot", Slot("input", (raw,)))
        if in_call:
            shared = tuple(k for k, v in params.items() if v == raw and not v.startswith("PARAM__"))
            if shared and all(k in used for k in shared):
                return ("slot", Slot("param", shared))
            if re.match(r"^[\w.]+$", raw):
                return ("slot", Slot("literal", text=raw))
        return None

    try:
        pattern = _parse_export(text.strip(), leaf)
    except _Unparsable:
        return None
    slots = tuple(_slots(pattern))
    in_slots = {n for s in slots if s.kind == "param" for n in s.names}
    fixed, free = [], []
    for k, v in idef.params.items():
        if k in in_slots:
            continue
        if k not in used:
            free.append(k)
            continue
        raw = params[k]
        fixed.append((k, v if raw.startswith("PARAM__") else _value(raw, v)))
    root = pattern[1] if pattern[0] in ("call", "var", "bin") else None
    if root is None:
        return None
    return Template(idef.name, root, pattern[0] == "call", slots, tuple(fixed), call.tuple_outputs,
                    idef.pine_exact, pattern, output, tuple(free))


def _value(raw: str, default: Any) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    v = float(raw)
    return int(v) if isinstance(default, int) and not isinstance(default, bool) and v.is_integer() else v


def _mapped_indicators() -> dict[str, Any]:
    """Built-ins and plugin indicators with a Pine mapping: what the exporter (and so discovery) can write."""
    from aio.indicators import builtin_indicators
    from aio.registry import registry

    registry.ensure_discovered()
    defs = {n: p.obj for n, p in registry.plugins["indicator"].items()}
    defs.update(builtin_indicators())
    return {n: d for n, d in defs.items() if getattr(d, "pine", None) is not None}


@cache
def templates() -> dict[str, list[Template]]:
    """Root of the pattern -> the aio indicators exporting to it: nested forms first, then TradingView-exact ones."""
    out: dict[str, list[Template]] = {}
    for name, idef in sorted(_mapped_indicators().items()):
        for t in _probe_templates(idef):
            out.setdefault(t.pine, []).append(t)
    for lst in out.values():
        # the most specific pattern first (ta.sma(ta.stoch(..), n) before ta.sma(x, n)); exact before
        # approximate; a call with more free slots before one fixing parameters
        lst.sort(key=lambda t: (-t.specificity, not t.exact, len(t.fixed), t.indicator, t.output or ""))
    return out
