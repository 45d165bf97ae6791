"""The Pine -> aio translation itself (used by :mod:`aio.pine.importer`).

A TradingView script runs top to bottom on every bar; the subset that has an aio
counterpart is the one where that run is stateless apart from the orders: inputs become
parameters with a search space, ``ta.*`` calls become indicator bindings (through the
inverse of the export map, :func:`aio.pine.pine_ast.templates`), other numeric
assignments become expression series, boolean assignments are inlined into the
conditions, and every ``strategy.entry/close/close_all`` call becomes a rule whose
condition is the conjunction of the ``if`` branches around it. ``strategy.exit(stop=,
limit=)`` at the top level becomes the exit's per-bar price levels; ``if c: entry(...)
else: strategy.cancel(...)`` is a rule with ``cancel_when_false``; the exporter's
distance exits (``var float d = na`` set when an entry is decided, read as
``loss=d / syminfo.mintick``) become ``stop_atr``/``stop_pct``...

Everything else is refused with the line, the column and the construct named, rather
than approximated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from aio.pine.pine_ast import PineImportError, Template, char_col, dotted, pattern_text, templates
from aio.strategy.expr import Binary, Bool, Call, History, Name, Node, Num, Unary

PRICES = {"open", "high", "low", "close", "volume", "hl2", "hlc3", "ohlc4"}
# Drawing and alerting: no effect on the orders, so the importer skips them.
VISUAL = {
    "plot", "plotshape", "plotchar", "plotarrow", "plotcandle", "plotbar", "bgcolor", "barcolor", "fill",
    "hline", "alertcondition", "alert", "log.info", "log.warning", "log.error",
}
# Calls of the rule language, by Pine name.
LANG_FUNCS = {
    "ta.crossover": "crossover", "ta.crossunder": "crossunder", "ta.cross": "cross", "math.abs": "abs",
    "math.min": "min", "math.max": "max", "ta.highest": "highest", "ta.lowest": "lowest",
    "ta.rising": "rising", "ta.falling": "falling", "na": "na", "nz": "nz",
}
BOOL_FUNCS = {"crossover", "crossunder", "cross", "rising", "falling", "na"}
# Why a construct has no aio counterpart (refusal messages say this).
REFUSED_CALLS = {
    "request.": "reads other symbols or timeframes (request.*), which the rule language cannot",
    "array.": "uses arrays, which keep state across bars",
    "matrix.": "uses matrices, which keep state across bars",
    "map.": "uses maps, which keep state across bars",
    "strategy.order": "places raw orders (strategy.order); use strategy.entry/close/exit",
    "strategy.cancel_all": "cancels every order (strategy.cancel_all); cancel by id in the else branch",
    "label.": "draws labels whose handles are kept as state",
    "line.": "draws lines whose handles are kept as state",
    "box.": "draws boxes whose handles are kept as state",
    "table.": "draws tables whose handles are kept as state",
    "str.": "uses string functions; rules compute with numbers and booleans only",
    "timeframe.": "depends on the chart's timeframe",
    "ta.valuewhen": "uses ta.valuewhen, which remembers past values (state)",
    "ta.barssince": "uses ta.barssince, which counts bars since an event (state)",
}
BUILTIN_VARS = {
    "bar_index": "the bar number", "time": "bar times", "time_close": "bar times", "timenow": "the clock",
    "barstate": "the bar state", "syminfo": "symbol information", "dayofweek": "calendar fields",
    "hour": "calendar fields", "minute": "calendar fields", "month": "calendar fields", "year": "calendar fields",
    "dayofmonth": "calendar fields", "session": "sessions", "strategy": "the strategy's state",
    "timeframe": "the chart's timeframe", "last_bar_index": "the last bar's number",
}
_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6}
_BINOP = {"Add": "+", "Sub": "-", "Mult": "*", "Div": "/"}
_CMPOP = {"Eq": "==", "NotEq": "!=", "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">="}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Pine v6 signatures: positional order of the arguments the importer reads.
SIG = {
    "strategy": ["title", "shorttitle", "overlay", "format", "precision", "scale", "pyramiding",
                 "calc_on_order_fills", "calc_on_every_tick", "max_bars_back", "backtest_fill_limits_assumption",
                 "default_qty_type", "default_qty_value", "initial_capital", "currency", "slippage",
                 "commission_type", "commission_value", "process_orders_on_close", "close_entries_rule",
                 "margin_long", "margin_short", "explicit_plot_zorder", "max_lines_count", "max_labels_count",
                 "max_boxes_count", "calc_bars_count", "risk_free_rate", "use_bar_magnifier",
                 "fill_orders_on_standard_ohlc", "max_polylines_count", "dynamic_requests", "behind_chart"],
    "input": ["defval", "title", "tooltip", "inline", "group", "display", "active"],
    "input.int": ["defval", "title", "minval", "maxval", "step", "tooltip", "inline", "group", "confirm",
                  "display", "active"],
    "input.float": ["defval", "title", "minval", "maxval", "step", "tooltip", "inline", "group", "confirm",
                    "display", "active"],
    "input.bool": ["defval", "title", "tooltip", "inline", "group", "confirm", "display", "active"],
    "input.string": ["defval", "title", "options", "tooltip", "inline", "group", "confirm", "display", "active"],
    "input.source": ["defval", "title", "tooltip", "inline", "group", "display", "active"],
    "input.color": ["defval", "title", "tooltip", "inline", "group", "confirm", "display", "active"],
    "strategy.entry": ["id", "direction", "qty", "limit", "stop", "oca_name", "oca_type", "comment",
                       "alert_message", "disable_alert"],
    "strategy.close": ["id", "comment", "qty", "qty_percent", "alert_message", "immediately", "disable_alert"],
    "strategy.close_all": ["comment", "alert_message", "immediately", "disable_alert"],
    "strategy.exit": ["id", "from_entry", "qty", "qty_percent", "profit", "limit", "loss", "stop", "trail_price",
                      "trail_points", "trail_offset", "oca_name", "comment", "comment_profit", "comment_loss",
                      "comment_trailing", "alert_message", "alert_profit", "alert_loss", "alert_trailing",
                      "disable_alert"],
    "strategy.cancel": ["id"],
}
# strategy() settings that change the trades: the backtest config decides them in aio.
STRATEGY_SETTINGS = ("pyramiding", "default_qty_type", "default_qty_value", "initial_capital", "currency",
                     "slippage", "commission_type", "commission_value", "process_orders_on_close",
                     "close_entries_rule", "calc_on_order_fills", "calc_on_every_tick", "margin_long",
                     "margin_short", "use_bar_magnifier", "backtest_fill_limits_assumption")



# -- printing our AST as rule-language text ---------------------------------------------------


def fmt_num(v: float) -> str:
    v = float(v)
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return np.format_float_positional(v, trim="-")


def to_source(node: Node, parent: int = 0) -> str:
    """Rule-language text of a node (what :func:`aio.strategy.expr.parse` reads back to it)."""
    if isinstance(node, Num):
        s = fmt_num(node.value)
        return f"({s})" if node.value < 0 and parent >= 5 else s
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, Name):
        return node.key
    if isinstance(node, History):
        return f"{to_source(node.operand, 9)}[{node.offset}]"
    if isinstance(node, Unary):
        if node.op == "-":
            return f"-{to_source(node.operand, 7)}"
        s = f"not {to_source(node.operand, 3)}"
        return f"({s})" if parent > 3 else s
    if isinstance(node, Binary):
        p = _PREC[node.op]
        s = f"{to_source(node.left, p)} {node.op} {to_source(node.right, p + 1)}"
        return f"({s})" if p < parent else s
    if isinstance(node, Call):
        return f"{node.fn}({', '.join(to_source(a) for a in node.args)})"
    raise TypeError(node)


def _is_bool(node: Node) -> bool:
    if isinstance(node, Bool):
        return True
    if isinstance(node, Binary):
        return node.op in ("and", "or", "==", "!=", "<", "<=", ">", ">=")
    if isinstance(node, Unary):
        return node.op == "not"
    if isinstance(node, Call):
        return node.fn in BOOL_FUNCS
    if isinstance(node, History):
        return _is_bool(node.operand)
    return False


def _and(parts: list[Node]) -> Node:
    if not parts:
        return Bool(True)
    out = parts[0]
    for p in parts[1:]:
        out = Binary("and", out, p)
    return out


def _names(node: Node) -> set[str]:
    from aio.strategy.expr import names

    return names(node)


# -- the translation ------------------------------------------------------------------------


@dataclass
class _Rule:
    id: str
    when: Node
    action: str
    direction: str
    type: str = "market"
    price: Node | None = None
    cancel_when_false: bool = False
    oca: str | None = None
    node: dict | None = None


@dataclass
class _Cand:
    """One reading of an indicator expression: a template and what the script gave its slots."""

    tmpl: Template
    inputs: dict[str, str]
    params: dict[str, Any]  # set by the text (slots and fixed); the template's free ones are not


def get_default(indicator: str, param: str) -> Any:
    from aio.indicators import get_indicator

    return get_indicator(indicator).params[param]


class Translator:
    def __init__(self, text: str, file: str, version: int | None) -> None:
        self.text, self.file, self.version = text, file, version
        self.lines = text.splitlines()
        self.params: dict[str, Any] = {}
        self.space: dict[str, dict[str, Any]] = {}
        self.consts: dict[str, Node] = {}
        self.strings: dict[str, str] = {}
        self.aliases: dict[str, Node] = {}  # inlined: boolean conditions, price aliases, fixed sources
        self.series: dict[str, dict[str, Any]] = {}  # named series: indicator bindings and expressions
        self.series_key: dict[tuple, str] = {}
        self.occurrences: dict[str, tuple[list[_Cand], str | None]] = {}  # indicator series -> its readings
        self.lone_notes: dict[str, str] = {}
        self.tuple_names: dict[str, Name] = {}
        self.visual: set[str] = set()
        self.functions: dict[str, dict] = {}
        self.rules: list[_Rule] = []
        self.order: list[tuple[str, Any]] = []  # ("entry", id) | ("close", index into closes)
        self.closes: list[tuple[str, str | None, Node, dict]] = []  # (entry id, comment, when, node)
        self.exits: dict[str, tuple[str, dict]] = {}  # "stop_long" -> (source, node)
        self.exit_id: str | None = None
        self.title: str | None = None
        self.shorttitle: str | None = None
        self.overlay = True
        self.settings: dict[str, Any] = {}
        self.notes: list[str] = []
        self._counter: dict[str, int] = {}
        self._renamed: set[str] = set()
        self._argpos: dict[int, dict] = {}
        # aio's distance exits as the exporter writes them: `var float d = na`, set with := in
        # `if <any entry condition>`, read by strategy.exit(loss=d / syminfo.mintick)
        self.dist_vars: dict[str, dict] = {}
        self.dist_set: dict[str, tuple[Node, Node, dict]] = {}
        self.dist_exits: dict[str, tuple[dict[str, str], str, dict]] = {}  # entry id -> ({loss|profit: var}, name, node)

    # -- errors ---------------------------------------------------------------------------
    def fail(self, node: dict | None, construct: str, why: str, fix: str = "") -> PineImportError:
        node = self._argpos.get(id(node), node)  # a named argument: point at its name
        line = node.get("lineno") if isinstance(node, dict) else None
        col = None
        src = ""
        if line and 1 <= line <= len(self.lines):
            src = self.lines[line - 1]
            col = char_col(src, node.get("col_offset") or 0)
        where = f"{self.file}:{line}:{col}" if line else self.file
        msg = f"{where}: {construct} is not supported by the Pine importer: {why}"
        if fix:
            msg += f". {fix[0].upper()}{fix[1:]}"
        if src:
            msg += f"\n  {src.expandtabs(1)}\n  {' ' * ((col or 1) - 1)}^"
        return PineImportError(msg, line, col, construct)

    # -- small readers -----------------------------------------------------------------------
    def bind(self, call: dict, fn: str) -> dict[str, dict]:
        sig = SIG[fn]
        out: dict[str, dict] = {}
        for i, a in enumerate(call["args"]):
            name = a.get("name")
            if name is None:
                if i >= len(sig):
                    raise self.fail(a, f"argument {i + 1} of {fn}()", f"{fn}() takes at most {len(sig)} arguments")
                name = sig[i]
            elif name == "when":
                raise self.fail(a, f"{fn}(when=...)", "the when= argument was removed in Pine v6",
                                "wrap the call in an if block instead")
            elif name not in sig:
                raise self.fail(a, f"{fn}({name}=...)", f"{fn}() has no argument {name!r} in Pine v6")
            else:
                self._argpos[id(a["value"])] = a
            out[name] = a["value"]
        return out

    def const_value(self, node: dict, what: str) -> Any:
        t = node["_type"]
        if t == "Constant":
            return node["value"]
        if t == "UnaryOp" and node["op"]["_type"] in ("USub", "UAdd"):
            v = self.const_value(node["operand"], what)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v if node["op"]["_type"] == "USub" else v
        if t == "Name":
            if node["id"] in self.strings:
                return self.strings[node["id"]]
            c = self.consts.get(node["id"])
            if isinstance(c, (Num, Bool)):
                v = c.value
                return int(v) if isinstance(c, Num) and float(v).is_integer() and isinstance(v, int) else v
        raise self.fail(node, what, "it must be a constant (a number, true/false or a string)")

    def const_str(self, node: dict, what: str) -> str:
        v = self.const_value(node, what)
        if not isinstance(v, str):
            raise self.fail(node, what, "it must be a string")
        return v

    def fresh(self, base: str) -> str:
        base = re.sub(r"\W", "_", base)
        n = self._counter.get(base, 0)
        while True:
            n += 1
            cand = base if n == 1 and base not in self.taken() else f"{base}_{n}"
            if cand not in self.taken():
                self._counter[base] = n
                return cand

    def taken(self) -> set[str]:
        return (set(self.params) | set(self.consts) | set(self.aliases) | set(self.series) | set(self.strings)
                | set(self.tuple_names) | PRICES | {"model"})

    # -- expressions ----------------------------------------------------------------------
    def expr(self, node: dict, hint: str = "") -> Node:
        t = node["_type"]
        if t == "Constant":
            v = node["value"]
            if isinstance(v, bool):
                return Bool(v)
            if isinstance(v, (int, float)):
                return Num(float(v))
            raise self.fail(node, f"the string {v!r} in an expression",
                            "rules compute with numbers and booleans; strings only name orders")
        if t == "Name":
            return self.name(node)
        if t == "Attribute":
            d = dotted(node)
            if d in templates() and d.startswith("ta."):
                return self.indicator(node, d, [], hint)
            if d in ("strategy.long", "strategy.short"):
                raise self.fail(node, d, "a direction belongs in strategy.entry's direction argument")
            raise self.fail(node, d or "this attribute", self._why_name(d or ""))
        if t == "BinOp":
            op = node["op"]["_type"]
            hit = self.match_indicator(node, _BINOP[op], strict=False) if _BINOP.get(op) in templates() else None
            if hit is not None:  # an export written as arithmetic around a call (100 * ta.tsi(...))
                return Name(self.add_series(hit[0], f"{hint}_{hit[1].indicator.lower()}" if hint
                                            else hit[1].indicator.lower()))
            if op not in _BINOP:
                raise self.fail(node, "the % operator", "the rule language has + - * / only")
            return Binary(_BINOP[op], self.expr(node["left"], hint), self.expr(node["right"], hint))
        if t == "UnaryOp":
            op = node["op"]["_type"]
            inner = self.expr(node["operand"], hint)
            if op == "Not":
                return Unary("not", inner)
            if op == "USub":
                return Num(-inner.value) if isinstance(inner, Num) else Unary("-", inner)
            return inner
        if t == "Compare":
            if len(node["ops"]) != 1:
                raise self.fail(node, "a chained comparison", "compare two values at a time", "join them with 'and'")
            return Binary(_CMPOP[node["ops"][0]["_type"]], self.expr(node["left"], hint),
                          self.expr(node["comparators"][0], hint))
        if t == "BoolOp":
            op = "and" if node["op"]["_type"] == "And" else "or"
            vals = [self.expr(v, hint) for v in node["values"]]
            out = vals[0]
            for v in vals[1:]:
                out = Binary(op, out, v)
            return out
        if t == "Subscript":
            sl = node.get("slice")
            if not (isinstance(sl, dict) and sl["_type"] == "Constant" and isinstance(sl["value"], int)
                    and not isinstance(sl["value"], bool) and sl["value"] >= 0):
                raise self.fail(node, "a history reference with a variable offset",
                                "the offset in x[n] must be a constant non-negative integer")
            return History(self.expr(node["value"], hint), int(sl["value"]))
        if t == "Call":
            return self.call(node, hint)
        if t == "Conditional":
            raise self.fail(node, "the ?: operator", "a value chosen per bar has no counterpart in the rule language",
                            "write the two cases as separate if blocks")
        if t in ("ForTo", "ForIn"):
            raise self.fail(node, "a for loop", "loops are not translated")
        if t == "While":
            raise self.fail(node, "a while loop", "loops are not translated")
        if t == "Switch":
            raise self.fail(node, "a switch", "switch blocks are not translated", "use if blocks")
        if t == "If":
            raise self.fail(node, "an if expression", "an if that returns a value is not translated")
        if t == "Tuple":
            raise self.fail(node, "a tuple or array literal", "collections are not translated")
        raise self.fail(node, f"a {t} expression", "it has no counterpart in the rule language")

    def _why_name(self, d: str) -> str:
        base = d.split(".")[0]
        if base in BUILTIN_VARS:
            return f"it reads {BUILTIN_VARS[base]}, which the rule language cannot"
        return "no aio counterpart is known for it"

    def name(self, node: dict) -> Node:
        n = node["id"]
        if n in PRICES:
            return Name(n)
        if n in self.consts:
            return self.consts[n]
        if n in self.aliases:
            return self.aliases[n]
        if n in self.tuple_names:
            return self.tuple_names[n]
        if n in self.params:
            if self.space[n]["type"] == "categorical" and any(isinstance(c, str) for c in self.space[n]["choices"]):
                raise self.fail(node, f"the string input {n!r} in an expression",
                                "rules compute with numbers and booleans only")
            return Name(n)
        if n in self.series:
            return Name(n)
        if n == "hlcc4":
            return self.indicator(node, "hlcc4", [], "hlcc4")
        if n == "na":
            raise self.fail(node, "na as a value", "rules test for na with na(x) and replace it with nz(x)")
        if n in self.dist_vars:
            raise self.fail(node, f"the var {n!r}", "a var starting at na keeps state from bar to bar; it is read "
                                                   "only as an exit distance (strategy.exit(loss=d / syminfo.mintick))")
        if n in self.strings:
            raise self.fail(node, f"the string {n!r} in an expression", "rules compute with numbers and booleans only")
        if n in self.visual:
            raise self.fail(node, f"{n!r}", "it holds a visual input (a color or a plot), not a number")
        if n in BUILTIN_VARS:
            raise self.fail(node, f"the built-in variable {n}", self._why_name(n))
        raise self.fail(node, f"the name {n!r}", "it is not defined before this line (or is not a series aio knows)")

    def call(self, node: dict, hint: str) -> Node:
        fn = dotted(node["func"]) or ""
        if fn in self.functions:
            return self.expr(self.inline(node, fn), hint)
        for prefix, why in REFUSED_CALLS.items():
            if fn == prefix or (prefix.endswith(".") and fn.startswith(prefix)):
                raise self.fail(node, fn, f"it {why}")
        if fn.startswith("input"):
            raise self.fail(node, f"{fn}() inside an expression", "inputs must be assigned to a variable of their own",
                            f"write `name = {fn}(...)` on its own line")
        named = [a for a in node["args"] if a.get("name")]
        args = [a["value"] for a in node["args"] if not a.get("name")]
        if fn in LANG_FUNCS:
            if named:
                raise self.fail(named[0], f"{fn}({named[0]['name']}=...)", "pass the arguments by position")
            lang = LANG_FUNCS[fn]
            if lang in ("highest", "lowest") and len(args) == 1:  # ta.highest(length) reads high / low
                return Call(lang, (Name("high" if lang == "highest" else "low"), self.expr(args[0], hint)))
            if lang in ("min", "max") and len(args) > 2:
                out = self.expr(args[0], hint)
                for a in args[1:]:
                    out = Call(lang, (out, self.expr(a, hint)))
                return out
            from aio.strategy.expr import FUNCTIONS

            lo, hi = FUNCTIONS[lang]
            if not lo <= len(args) <= hi:
                raise self.fail(node, f"{fn}() with {len(args)} arguments", f"aio's {lang}() takes {lo}-{hi}")
            return Call(lang, tuple(self.expr(a, hint) for a in args))
        if fn in templates():
            if named:
                raise self.fail(named[0], f"{fn}({named[0]['name']}=...)",
                                "named arguments of ta.* calls are not translated", "pass them by position")
            return self.indicator(node, fn, args, hint)
        inside = [t for lst in templates().values() for t in lst if fn in t.anchors]
        if inside:  # a call aio reads only inside an expression around it (ta.tsi in 100 * ta.tsi(...))
            forms = list(dict.fromkeys(f"{pattern_text(t.pattern)} ({t.indicator}"
                                       f"{'.' + t.output if t.output else ''})" for t in inside))
            raise self.fail(node, fn, f"aio reads {fn} only in the forms its indicators export to: "
                            + "; ".join(forms[:4]) + ("; ..." if len(forms) > 4 else ""))
        if fn.startswith(("ta.", "math.")):
            raise self.fail(node, fn, "it has no mapping to an aio indicator (see aio/indicators/pine_map.py)")
        if fn in VISUAL:
            raise self.fail(node, f"{fn}() inside an expression", "drawing calls have no value for rules")
        if fn.startswith("strategy."):
            raise self.fail(node, f"{fn}() inside an expression", "orders are statements, not values")
        raise self.fail(node, f"the function {fn or 'call'}()",
                        "it is not a ta.* call with an aio mapping nor a single-expression user function")

    def inline(self, node: dict, fn: str) -> dict:
        """A one-expression user function, its parameters replaced by the call's arguments."""
        fdef = self.functions[fn]
        params = [p["name"] for p in fdef["args"]]
        given: dict[str, dict] = {}
        for i, a in enumerate(node["args"]):
            key = a.get("name") or (params[i] if i < len(params) else None)
            if key not in params:
                raise self.fail(a, f"argument {i + 1} of {fn}()", f"{fn}() takes {len(params)} arguments")
            given[key] = a["value"]
        for p in fdef["args"]:
            if p["name"] not in given:
                if p.get("default") is None:
                    raise self.fail(node, f"{fn}()", f"argument {p['name']!r} is missing")
                given[p["name"]] = p["default"]

        def sub(x: Any) -> Any:
            if isinstance(x, list):
                return [sub(v) for v in x]
            if not isinstance(x, dict):
                return x
            if x.get("_type") == "Name" and x["id"] in given:
                return given[x["id"]]
            return {k: sub(v) for k, v in x.items()}

        return sub(fdef["body"][0]["value"])

    def param_value(self, node: dict) -> Any:
        """An indicator parameter: an input's name or a number; None for anything else (a series)."""
        if node["_type"] == "Name" and node["id"] in self.params:
            return node["id"]
        try:
            v = self.const_value(node, "")
        except PineImportError:
            return None
        return v if isinstance(v, (int, float)) else None

    def param_arg(self, node: dict, fn: str) -> Any:
        v = self.param_value(node)
        if v is None:
            raise self.fail(node, f"this argument of {fn}()",
                            "an indicator's length or factor must be an input or a number, not a series",
                            "assign it with input.int()/input.float() or write the number")
        return v

    def indicator(self, node: dict, fn: str, args: list[dict], hint: str) -> Node:
        cands, tmpl = self.indicator_binding(node, fn, args)
        if tmpl.tuple_outputs:
            raise self.fail(node, f"{fn}() used as a value",
                            "it returns a tuple", f"destructure it: [a, b, c] = {fn}(...)")
        short = fn.split(".")[-1] if fn[:1].isalpha() else tmpl.indicator.lower()
        return Name(self.add_series(cands, f"{hint}_{short}" if hint else short))

    # -- the inverse export map: patterns ---------------------------------------------------
    def _shape(self, pat: tuple, node: dict, found: list, bad: list) -> bool:
        """Does the syntax tree have the pattern's shape? No side effects: slots are collected
        in ``found`` (a parameter slot holding a series goes to ``bad`` and fails the match)."""
        kind = pat[0]
        if kind == "slot":
            slot = pat[1]
            if slot.kind == "literal":
                text = dotted(node)
                if text is None and node["_type"] == "Constant" and isinstance(node["value"], (int, float)):
                    v = node["value"]
                    text = ("true" if v else "false") if isinstance(v, bool) else fmt_num(v)
                return text == slot.text
            if slot.kind == "param" and self.param_value(node) is None:
                bad.append(node)
                return False
            found.append((slot, node))
            return True
        if kind == "num":
            try:
                v = self.const_value(node, "")
            except PineImportError:
                return False
            return isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == pat[1]
        if kind == "var":
            return node["_type"] in ("Name", "Attribute") and dotted(node) == pat[1]
        if kind == "call":
            args = node.get("args") or []
            return (node["_type"] == "Call" and dotted(node["func"]) == pat[1] and len(args) == len(pat[2])
                    and not any(a.get("name") for a in args)
                    and all(self._shape(p, a["value"], found, bad) for p, a in zip(pat[2], args)))
        if kind == "bin":
            return (node["_type"] == "BinOp" and _BINOP.get(node["op"]["_type"]) == pat[1]
                    and self._shape(pat[2], node["left"], found, bad) and self._shape(pat[3], node["right"], found, bad))
        return False

    def match_indicator(self, node: dict, root: str, strict: bool = True) -> tuple[list[_Cand], Template] | None:
        """The readings of ``node`` as an aio indicator (the most specific patterns that match).

        Several indicators can export to the same text (ta.sma(ta.stoch(..), n) is STOCH's slowk
        and STOCHF's fastd; ta.atr is ATR_TV and ATR); all are kept and :meth:`resolve_indicators`
        picks one once the whole script is read. ``strict``: refuse when nothing matches
        (a call of a mapped ta.* function), else return None (arithmetic that is no indicator).
        """
        matched: list[tuple[Template, dict[str, Any], dict[str, dict]]] = []
        bad: list[dict] = []
        for t in templates().get(root, []):
            if matched and t.specificity < matched[0][0].specificity:
                break
            found: list = []
            if not self._shape(t.pattern, node, found, bad):
                continue
            params: dict[str, Any] = {}
            nodes: dict[str, dict] = {}
            ok = True
            for slot, n in found:
                if slot.kind == "input":
                    nodes[slot.names[0]] = n
                    continue
                v = self.param_value(n)
                for pname in slot.names:
                    if pname in params and params[pname] != v:
                        ok = False
                    params[pname] = v
            if ok:
                matched.append((t, {**params, **dict(t.fixed)}, nodes))
        if not matched:
            if not strict:
                return None
            if bad:
                self.param_arg(bad[0], root)  # raises: a length that is a series
            calls = [t for t in templates()[root] if t.call]
            if not calls:
                raise self.fail(node, f"{root}()", f"{root} is a variable, not a function", f"write {root}")
            want = sorted({len(t.pattern[2]) for t in calls})
            raise self.fail(node, f"{root}() with these arguments",
                            f"aio reads {root} with {' or '.join(map(str, want))} positional arguments "
                            f"({', '.join(dict.fromkeys(t.indicator for t in calls))})")
        sources: dict[int, str] = {}
        cands = []
        for t, params, nodes in matched:
            inputs = {}
            for name, n in nodes.items():
                if id(n) not in sources:
                    sources[id(n)] = to_source(self.expr(n))
                inputs[name] = sources[id(n)]
            cands.append(_Cand(t, inputs, params))
        return cands, matched[0][0]

    def indicator_binding(self, node: dict, fn: str, args: list[dict] | None = None):
        named = [a for a in node.get("args") or [] if a.get("name")]
        if named:
            raise self.fail(named[0], f"{fn}({named[0]['name']}=...)",
                            "named arguments of ta.* calls are not translated", "pass them by position")
        return self.match_indicator(node, fn, strict=True)

    def add_series(self, cands: list[_Cand], alias: str, output: str | None = None) -> str:
        key = repr([(c.tmpl.indicator, c.tmpl.output, sorted(c.inputs.items()),
                     sorted((k, repr(v)) for k, v in c.params.items())) for c in cands])
        if key in self.series_key:
            return self.series_key[key]
        if alias in self.taken():
            alias = self.fresh(alias)
        self.series[alias] = self._binding(cands[0], output, self._lone_free(cands[0]))
        self.occurrences[alias] = (cands, output)
        self.series_key[key] = alias
        return alias

    @staticmethod
    def _binding(c: _Cand, output: str | None, free: dict[str, Any]) -> dict[str, Any]:
        binding: dict[str, Any] = {"fn": c.tmpl.indicator}
        if c.inputs:
            binding["inputs"] = dict(c.inputs)
        params = {**c.params, **free}
        if params:
            binding["params"] = params
        out = output or c.tmpl.output
        if out:
            binding["output"] = out
        return binding

    @staticmethod
    def _lone_free(c: _Cand) -> dict[str, Any]:
        """Values of the parameters only an indicator's other outputs use, when the script computes none
        of those: periods at 1 where the indicator takes it, since TA-Lib starts every output after the
        longest warm-up (STOCH's slowk waits for slowd) and Pine computes each expression on its own."""
        from aio.indicators import get_indicator

        idef = get_indicator(c.tmpl.indicator)
        out: dict[str, Any] = {}
        for k in c.tmpl.free:
            d = idef.params[k]
            out[k] = d
            if "period" in k and isinstance(d, int) and not isinstance(d, bool) and idef.lookback is not None:
                known = {p: v for p, v in {**idef.params, **c.params}.items() if not isinstance(v, str)}
                try:
                    if idef.lookback(idef.resolve_params({**known, **out, k: 1})) <= \
                            idef.lookback(idef.resolve_params({**known, **out})):
                        out[k] = 1
                except Exception:  # noqa: BLE001 - the indicator refuses 1: keep its default
                    pass
        return out

    def resolve_indicators(self) -> None:
        """Choose among the readings of each indicator expression, now that the whole script is read.

        A reading is preferred when another expression of the script reads as the same indicator
        on the same inputs with agreeing parameters: the exporter writes every output of a binding
        (STOCH's slowk and slowd lines), so ta.sma(ta.stoch(..), n) next to a slowd line is STOCH's
        slowk, next to a bare ta.stoch line STOCHF's fastd. Parameters an output does not depend on
        are taken from such a sibling; without one, :meth:`_lone_free` decides them.
        """
        occ = self.occurrences

        def agree(a: _Cand, b: _Cand) -> bool:
            return (a.tmpl.indicator == b.tmpl.indicator and a.inputs == b.inputs
                    and all(a.params[k] == b.params[k] for k in a.params.keys() & b.params.keys()))

        chosen: dict[str, _Cand] = {}
        for alias, (cands, _) in occ.items():
            if len(cands) == 1:
                chosen[alias] = cands[0]
                continue
            score = [sum(any(agree(c, d) for d in occ[o][0]) for o in occ if o != alias) for c in cands]
            chosen[alias] = cands[score.index(max(score))]  # ties: the template order (exact first)
        for alias, c in chosen.items():
            free: dict[str, Any] = {}
            for o, d in chosen.items():
                if o != alias and agree(c, d):
                    free.update({k: d.params[k] for k in c.tmpl.free if k in d.params and k not in free})
            lone = {k: v for k, v in self._lone_free(c).items() if k not in free}
            if lone and any(lone[k] != get_default(c.tmpl.indicator, k) for k in lone):
                self.lone_notes[alias] = (
                    f"{alias} is {c.tmpl.indicator}.{c.tmpl.output} and the script computes none of its other "
                    f"outputs: {', '.join(f'{k}={v}' for k, v in lone.items())}, so that aio's values start on the "
                    f"bar Pine's do (TA-Lib starts every output after the longest warm-up)")
            self.series[alias] = self._binding(c, occ[alias][1], {**free, **lone})

    # -- statements -------------------------------------------------------------------------
    def run(self, tree: dict) -> None:
        if self.version != 6:
            raise PineImportError(
                f"{self.file}: the importer reads Pine v6 (//@version=6), this script says "
                f"{'//@version=' + str(self.version) if self.version else 'no version'}; convert it in "
                f"TradingView's Pine editor (Convert code to v6) first", 1, 1, "//@version")
        for st in tree["body"]:
            self.statement(st, [], top=True)
        if self.title is None:
            raise PineImportError(f"{self.file}: no strategy(...) declaration found; only strategy scripts "
                                  f"place orders (an indicator() script has no trades to import)", 1, 1, "strategy()")
        if not self.rules:
            raise PineImportError(f"{self.file}: the script places no orders (no strategy.entry call)", 1, 1,
                                  "strategy.entry")

    def statement(self, st: dict, conds: list[Node], top: bool, else_of: set[str] | None = None) -> None:
        t = st["_type"]
        if t == "Expr":
            v = st["value"]
            vt = v["_type"]
            if vt == "If":
                return self.if_block(v, conds)
            if vt == "Call":
                return self.call_statement(v, conds, top, else_of)
            return self.expr(v) and None  # refuses loops, switches, ...
        if t == "ReAssign":
            raise self.fail(st, f"the reassignment {dotted(st['target']) or ''} :=",
                            "variables changed with := carry state from bar to bar, which rules cannot express")
        if t == "AugAssign":
            raise self.fail(st, "an augmented assignment (+= -= ...)",
                            "variables changed in place carry state from bar to bar")
        if t == "Assign" and (st.get("mode") or {}).get("_type") == "VarIp":
            raise self.fail(st, "varip", "varip variables keep their value across ticks and bars")
        if t == "Assign":
            if not top:
                raise self.fail(st, "a declaration inside an if block",
                                "values set in a local block depend on the branch taken (state)",
                                "declare the value at the top level and use it in the condition")
            return self.assign(st)
        if t == "FunctionDef":
            body = st["body"]
            if st.get("method") or len(body) != 1 or body[0]["_type"] != "Expr" or \
                    body[0]["value"]["_type"] in ("If", "ForTo", "ForIn", "While", "Switch"):
                raise self.fail(st, f"the user function {st['name']}()",
                                "only functions whose body is a single expression are inlined")
            self.functions[st["name"]] = st
            return None
        names = {"TypeDef": "a type definition", "EnumDef": "an enum", "Import": "a library import",
                 "Break": "break", "Continue": "continue"}
        raise self.fail(st, names.get(t, f"a {t} statement"), "it has no counterpart in aio strategies")

    def if_block(self, node: dict, conds: list[Node]) -> None:
        test = self.expr(node["test"])
        body = node["body"]
        if not conds and not node.get("orelse") and body and all(
                st["_type"] == "ReAssign" and st["target"]["_type"] == "Name" and st["target"]["id"] in self.dist_vars
                for st in body):
            for st in body:  # distances fixed when an entry is decided (aio's exit.stop_atr/..._pct)
                self.dist_set[st["target"]["id"]] = (test, self.expr(st["value"]), st)
            return None
        placed = set()
        for st in node["body"]:
            self.statement(st, conds + [test], top=False)
            if st["_type"] == "Expr" and st["value"]["_type"] == "Call" and \
                    dotted(st["value"]["func"]) == "strategy.entry":
                placed.add(self._entry_id(st["value"]))
        if node.get("orelse"):
            neg = Unary("not", test)
            for st in node["orelse"]:
                self.statement(st, conds + [neg], top=False, else_of=placed if not conds else set())

    def _entry_id(self, call: dict) -> str:
        a = self.bind(call, "strategy.entry")
        return self.const_str(a["id"], "strategy.entry's id") if "id" in a else ""

    def call_statement(self, v: dict, conds: list[Node], top: bool, else_of: set[str] | None) -> None:
        fn = dotted(v["func"]) or ""
        if fn == "strategy":
            return self.strategy_decl(v)
        if fn in ("indicator", "study", "library"):
            raise self.fail(v, f"{fn}()", "this is not a strategy script: it places no orders")
        if fn in VISUAL:
            return None
        if fn == "strategy.entry":
            return self.entry(v, conds)
        if fn in ("strategy.close", "strategy.close_all"):
            return self.close(v, fn, conds)
        if fn == "strategy.exit":
            if conds:
                raise self.fail(v, "strategy.exit inside an if block",
                                "aio's exit levels apply on every bar a position is open",
                                "call strategy.exit at the top level")
            return self.exit(v)
        if fn == "strategy.cancel":
            a = self.bind(v, "strategy.cancel")
            oid = self.const_str(a.get("id") or v, "strategy.cancel's id")
            if else_of is None or oid not in else_of:
                raise self.fail(v, "strategy.cancel here",
                                "aio cancels a pending order only when the condition that places it is false",
                                "write `if cond` / strategy.entry(id, ...) / `else` / strategy.cancel(id) at the top level")
            for r in self.rules:
                if r.id == self._rule_id(oid, v):
                    r.cancel_when_false = True
            return None
        self.expr(v)  # a call with a value used as a statement: refuses with its own reason
        raise self.fail(v, f"{fn}() as a statement", "its value is not used")

    def _rule_id(self, raw: str, node: dict) -> str:
        rid = raw if _IDENT.match(raw) else re.sub(r"\W+", "_", raw).strip("_") or "order"
        if not _IDENT.match(rid):
            rid = f"o_{rid}"
        if rid != raw and raw not in self._renamed:
            self._renamed.add(raw)
            self.notes.append(f"order id {raw!r} became {rid!r} (aio ids are identifiers; trades name it so)")
        return rid

    def entry(self, v: dict, conds: list[Node]) -> None:
        a = self.bind(v, "strategy.entry")
        for req in ("id", "direction"):
            if req not in a:
                raise self.fail(v, "strategy.entry", f"its {req} argument is missing")
        raw = self.const_str(a["id"], "strategy.entry's id")
        rid = self._rule_id(raw, v)
        d = dotted(a["direction"])
        if d not in ("strategy.long", "strategy.short"):
            raise self.fail(a["direction"], "this direction", "it must be strategy.long or strategy.short")
        direction = "long" if d == "strategy.long" else "short"
        if "limit" in a and "stop" in a:
            raise self.fail(v, "a stop-limit entry (both stop= and limit=)", "aio entries are market, stop or limit")
        kind, price = "market", None
        for k in ("stop", "limit"):
            if k in a:
                kind, price = k, self.expr(a[k], rid)
        oca = None
        if "oca_name" in a:
            oca_type = dotted(a["oca_type"]) if "oca_type" in a else "strategy.oca.none"
            if oca_type == "strategy.oca.cancel":
                oca = self.const_str(a["oca_name"], "oca_name")
                if not _IDENT.match(oca):
                    raise self.fail(a["oca_name"], f"the OCA name {oca!r}", "aio OCA names are identifiers")
            elif oca_type == "strategy.oca.reduce":
                raise self.fail(a["oca_type"], "strategy.oca.reduce", "aio's OCA groups cancel; they do not reduce")
            elif oca_type != "strategy.oca.none":
                raise self.fail(a.get("oca_type") or v, f"oca_type={oca_type}", "it is not a known OCA type")
        if "qty" in a:
            self._note("qty", "strategy.entry(qty=...) is left to aio's sizer (sizer=...) and backtest.qty")
        if "comment" in a:
            c = self.const_str(a["comment"], "comment")
            if c != raw:
                self.notes.append(f"entry {raw!r} has comment {c!r}; aio names its trades by the id")
        when = _and(conds)
        for r in self.rules:
            if r.id == rid:
                if r.action != "entry" or (r.direction, r.type, r.oca) != (direction, kind, oca) or \
                        (r.price is not None and price is not None and to_source(r.price) != to_source(price)):
                    raise self.fail(v, f"a second strategy.entry({raw!r}) with other settings",
                                    "one order id has one direction, type, price and OCA group in aio")
                r.when = Binary("or", r.when, when)
                return
        self.rules.append(_Rule(rid, when, "entry", direction, kind, price, False, oca, v))
        self.order.append(("entry", rid))

    def _note(self, key: str, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def close(self, v: dict, fn: str, conds: list[Node]) -> None:
        a = self.bind(v, fn)
        for k in ("qty", "qty_percent"):
            if k in a:
                raise self.fail(a[k], f"{fn}({k}=...)", "partial closes are not translated; aio closes the position")
        if "immediately" in a and self.const_value(a["immediately"], "immediately") is True:
            raise self.fail(a["immediately"], f"{fn}(immediately=true)", "aio fills closes at the next bar's open")
        comment = self.const_str(a["comment"], "comment") if "comment" in a else None
        if fn == "strategy.close" and "id" not in a:
            raise self.fail(v, "strategy.close without an id", "name the entry it closes")
        target = None if fn == "strategy.close_all" else self.const_str(a["id"], "strategy.close's id")
        self.order.append(("close", len(self.closes)))
        self.closes.append((target, comment, _and(conds), v))

    def exit(self, v: dict) -> None:
        a = self.bind(v, "strategy.exit")
        if ("loss" in a or "profit" in a) and not any(k in a for k in ("stop", "limit", "trail_price", "trail_points",
                                                                       "trail_offset", "qty", "qty_percent")):
            return self.distance_exit(v, a)
        for k in ("profit", "loss", "trail_price", "trail_points", "trail_offset", "qty", "qty_percent", "oca_name"):
            if k in a:
                raise self.fail(a[k], f"strategy.exit({k}=...)",
                                "only price levels (stop=, limit=) are translated to aio exits")
        if "stop" not in a and "limit" not in a:
            raise self.fail(v, "strategy.exit without stop= or limit=", "it would never fill")
        name = (self.const_str(a["comment"], "comment") if "comment" in a
                else self.const_str(a["id"], "strategy.exit's id"))
        if self.exit_id is not None and name != self.exit_id:
            self.notes.append(f"exit {name!r} is reported under the name {self.exit_id!r}")
        self.exit_id = self.exit_id or name
        sides: list[str]
        if "from_entry" in a:
            eid = self.const_str(a["from_entry"], "from_entry")
            sides = [f"@{eid}"]  # resolved to a side once every entry is known
        else:
            sides = ["long", "short"]
        for k, key in (("stop", "stop"), ("limit", "take")):
            if k in a:
                src = to_source(self.expr(a[k], "exit"))
                for s in sides:
                    self.exits.setdefault(f"{key}:{s}", (src, v))
                    if self.exits[f"{key}:{s}"][0] != src:
                        raise self.fail(v, "a second strategy.exit with other levels", "one level per side")

    def distance_exit(self, v: dict, a: dict) -> None:
        """strategy.exit(loss=d / syminfo.mintick, profit=...) with d one of the exporter's entry-time distances."""
        used: dict[str, str] = {}
        for k in ("loss", "profit"):
            if k not in a:
                continue
            x = a[k]
            ok = (x["_type"] == "BinOp" and x["op"]["_type"] == "Div" and x["left"]["_type"] == "Name"
                  and x["left"]["id"] in self.dist_set and dotted(x["right"]) == "syminfo.mintick")
            if not ok:
                raise self.fail(x, f"strategy.exit({k}=...)",
                                "ticks are translated only as d / syminfo.mintick, with d a distance set when an "
                                "entry is decided (var float d = na; if <entry conditions> d := k * ta.atr(n))")
            used[k] = x["left"]["id"]
        if "from_entry" not in a:
            raise self.fail(v, "strategy.exit(loss=/profit=) without from_entry", "name the entry it protects")
        eid = self.const_str(a["from_entry"], "from_entry")
        name = (self.const_str(a["comment"], "comment") if "comment" in a
                else self.const_str(a["id"], "strategy.exit's id"))
        self.dist_exits[self._rule_id(eid, v)] = (used, name, v)

    def _distance_exit_dict(self) -> dict[str, Any]:
        entries = [r for r in self.rules if r.action == "entry"]
        any_entry = entries[0].when
        for r in entries[1:]:
            any_entry = Binary("or", any_entry, r.when)
        first_node = next(iter(self.dist_exits.values()))[2]
        if self.exits:
            raise self.fail(first_node, "strategy.exit with both loss=/profit= and stop=/limit= exits",
                            "aio uses either price levels or distances")
        missing = sorted({r.id for r in entries} - set(self.dist_exits))
        kinds = {tuple(sorted(u.items())) for u, _, _ in self.dist_exits.values()}
        if missing or len(kinds) != 1:
            raise self.fail(first_node, "distance exits for some entries only",
                            f"aio's distances protect every entry ({', '.join(missing) or 'with the same distances'})")
        out: dict[str, Any] = {}
        atr_len = None
        for k, var in dict(next(iter(kinds))).items():
            test, value, st = self.dist_set[var]
            if to_source(test) != to_source(any_entry):
                raise self.fail(st, f"the distance {var} set under this condition",
                                "aio fixes exit distances when any entry is decided; set it under the OR of "
                                "every entry condition")
            key = "stop" if k == "loss" else "take"

            def factor(n: Node) -> Any:
                if isinstance(n, Num):
                    return float(n.value)
                if isinstance(n, Name) and n.attr is None and n.name in self.params:
                    return n.name
                raise self.fail(st, f"the distance factor {to_source(n)}", "it must be a number or an input")

            if isinstance(value, Binary) and value.op == "*" and isinstance(value.right, Name) and                     self.series.get(value.right.name, {}).get("fn") in ("ATR", "ATR_TV"):
                out[f"{key}_atr"] = factor(value.left)
                n = self.series[value.right.name].get("params", {}).get("timeperiod", 14)
                if atr_len is not None and atr_len != n:
                    raise self.fail(st, "two ATR lengths in the exits", "aio's exits share one ATR")
                atr_len = n
            elif isinstance(value, Binary) and value.op == "/" and isinstance(value.right, Num) and                     value.right.value == 100 and isinstance(value.left, Binary) and value.left.op == "*" and                     isinstance(value.left.left, Name) and value.left.left.key == "close":
                out[f"{key}_pct"] = factor(value.left.right)
            else:
                raise self.fail(st, f"the distance {to_source(value)}",
                                "distances are translated as k * ta.atr(n) or close * k / 100")
        if atr_len is not None:
            out["atr_length"] = atr_len
            self._note("atr", "ATR exit distances use TA-Lib's ATR in aio's backtest, as in every aio strategy "
                              "(Pine's ta.atr seeds its first values differently; they converge)")
        names = {n for _, n, _ in self.dist_exits.values()}
        out["id"] = sorted(names)[0]
        return out

    def strategy_decl(self, v: dict) -> None:
        if self.title is not None:
            raise self.fail(v, "a second strategy() declaration", "a script declares itself once")
        a = self.bind(v, "strategy")
        if "title" not in a:
            raise self.fail(v, "strategy()", "its title is missing")
        self.title = self.const_str(a["title"], "the strategy title")
        if "shorttitle" in a:
            self.shorttitle = self.const_str(a["shorttitle"], "shorttitle")
        if "overlay" in a:
            self.overlay = bool(self.const_value(a["overlay"], "overlay"))
        for k in STRATEGY_SETTINGS:
            if k in a:
                val = dotted(a[k]) or self.const_value(a[k], k)
                self.settings[k] = ("true" if val else "false") if isinstance(val, bool) else val

    def assign(self, st: dict) -> None:
        tgt = st["target"]
        value = st.get("value")
        if value is None:
            raise self.fail(st, "a declaration without a value", "every variable needs an initial value")
        if tgt["_type"] == "Tuple":
            return self.tuple_assign(st, tgt, value)
        if tgt["_type"] != "Name":
            raise self.fail(st, "an assignment to a field or element", "only plain variables are translated")
        name = tgt["id"]
        if name in self.taken() - {"model"}:
            raise self.fail(tgt, f"a second declaration of {name!r}", "each name is declared once")
        if name == "model":
            raise self.fail(tgt, "the variable name 'model'", "aio reserves model.* for model outputs", "rename it")
        mode = (st.get("mode") or {}).get("_type")
        vt = value["_type"]
        fn = dotted(value["func"]) if vt == "Call" else None
        if mode == "Var" and value["_type"] == "Name" and value["id"] == "na":
            self.dist_vars[name] = st  # only usable as an exit distance (see if_block / exit)
            return None
        if mode == "Var":
            try:
                c = self.const_value(value, "")
            except PineImportError:
                raise self.fail(st, "var with a non-constant initial value",
                                "var keeps a value from bar to bar; only constants (var x = 1.5) are translated") from None
            return self.constant(name, c, st)
        if fn is not None and (fn == "input" or fn.startswith("input.")):
            return self.input(name, value, fn)
        if fn in VISUAL or (fn or "").startswith(("plot", "hline")) or _mentions_color(value):
            self.visual.add(name)  # a plot handle or a color: drawing only, never read by orders
            return None
        if vt in ("Constant",) or (vt == "UnaryOp" and value["operand"]["_type"] == "Constant"):
            return self.constant(name, self.const_value(value, "this value"), st)
        hit = None
        if fn is not None and fn in templates() and fn.startswith("ta.") and fn not in LANG_FUNCS:
            hit = self.indicator_binding(value, fn)
        elif vt == "BinOp" and _BINOP.get(value["op"]["_type"]) in templates():
            hit = self.match_indicator(value, _BINOP[value["op"]["_type"]], strict=False)
        if hit is not None:
            cands, tmpl = hit
            if tmpl.tuple_outputs:
                raise self.fail(value, f"{fn}() assigned to one name", "it returns a tuple",
                                f"destructure it: [a, b, c] = {fn}(...)")
            alias = self.add_series(cands, name)
            if alias != name:
                self.aliases[name] = Name(alias)
            return None
        node = self.expr(value, name)
        if isinstance(node, (Name, Num, Bool)) or _is_bool(node):
            self.aliases[name] = node  # a price, another series, a condition: used in place
            return None
        if not (_names(node) - set(self.params)):
            self.notes.append(f"{name} depends on inputs only and is computed as a series")
        self.series[name] = {"expr": to_source(node)}
        self.series_key[f"expr:{name}"] = name

    def tuple_assign(self, st: dict, tgt: dict, value: dict) -> None:
        fn = dotted(value["func"]) if value["_type"] == "Call" else None
        if fn is not None and fn not in templates() and fn not in self.functions:
            raise self.fail(value, fn, "it has no mapping to an aio indicator (see aio/indicators/pine_map.py)")
        if fn not in templates():
            raise self.fail(value, "a tuple assignment from this expression",
                            "only ta.* calls that return tuples (ta.bb, ta.macd, ta.dmi, ta.kc) are translated")
        cands, tmpl = self.indicator_binding(value, fn)
        cands = [c for c in cands if c.tmpl.tuple_outputs == tmpl.tuple_outputs]  # the names read its order
        if not tmpl.tuple_outputs:
            raise self.fail(value, f"a tuple assignment from {fn}()", "it returns one value")
        names = [e["id"] if e["_type"] == "Name" else None for e in tgt["elts"]]
        if len(names) != len(tmpl.tuple_outputs):
            raise self.fail(tgt, f"{len(names)} names for {fn}()", f"it returns {len(tmpl.tuple_outputs)} values")
        from aio.indicators import get_indicator

        outputs = get_indicator(tmpl.indicator).outputs
        keep = [(n, o) for n, o in zip(names, tmpl.tuple_outputs) if n and n != "_" and o in outputs]
        if not keep:
            return None
        alias = self.add_series(cands, keep[0][0], output=keep[0][1])
        for n, o in keep:
            self.tuple_names[n] = Name(alias, o)

    def constant(self, name: str, value: Any, node: dict) -> None:
        if isinstance(value, bool):
            self.consts[name] = Bool(value)
        elif isinstance(value, (int, float)):
            self.consts[name] = Num(float(value))
        elif isinstance(value, str):
            self.strings[name] = value
        else:
            raise self.fail(node, f"the constant {name!r}", "only numbers, true/false and strings are translated")

    def input(self, name: str, call: dict, fn: str) -> None:
        if fn not in SIG:
            raise self.fail(call, f"{fn}()", "it is not one of input, input.int, input.float, input.bool, "
                            "input.string, input.source")
        a = self.bind(call, fn)
        if "defval" not in a:
            raise self.fail(call, f"{fn}()", "its default value is missing")
        dv = a["defval"]
        title = self.const_str(a["title"], "the input title") if "title" in a else ""
        if fn == "input.color":
            self.visual.add(name)
            return None
        if fn == "input.source" or (fn == "input" and dv["_type"] == "Name" and dv["id"] in PRICES):
            src = self.expr(dv)
            if not isinstance(src, Name):
                raise self.fail(dv, "this source input", "its default must be a price series (close, hl2, ...)")
            self.aliases[name] = src
            self.notes.append(f"source input {name!r} is fixed to {src.key} (aio searches numbers, not series)")
            return None
        value = self.const_value(dv, f"the default of {fn}()")
        if fn == "input.int" and not isinstance(value, bool) and isinstance(value, float) and value.is_integer():
            value = int(value)
        kind = {"input.int": "int", "input.float": "float", "input.bool": "bool", "input.string": "str"}.get(fn)
        if kind is None:  # plain input(): the default's type decides
            kind = ("bool" if isinstance(value, bool) else "int" if isinstance(value, int)
                    else "float" if isinstance(value, float) else "str")
        if kind == "float":
            value = float(value)
        space: dict[str, Any] = {}
        if "options" in a:
            opts_node = a["options"]
            if opts_node["_type"] != "Tuple":
                raise self.fail(opts_node, "options", "they must be a list literal like [1, 2, 3]")
            opts = [self.const_value(e, "an option") for e in opts_node["elts"]]
            space = {"type": "categorical", "choices": opts}
        elif kind == "bool":
            space = {"type": "bool"}
        elif kind == "str":
            space = {"type": "categorical", "choices": [value]}
        else:
            lo = self.const_value(a["minval"], "minval") if "minval" in a else None
            hi = self.const_value(a["maxval"], "maxval") if "maxval" in a else None
            step = self.const_value(a["step"], "step") if "step" in a else None
            dlo, dhi = _default_range(value, kind)
            missing = [k for k, v in (("minval", lo), ("maxval", hi)) if v is None]
            lo = lo if lo is not None else min(dlo, value)
            hi = hi if hi is not None else max(dhi, value)
            if missing:
                self.notes.append(f"input {name!r} has no {' or '.join(missing)}: searched over "
                                  f"[{fmt_num(lo)}, {fmt_num(hi)}] (edit strategy.space.{name} to change)")
            if kind == "int":
                lo, hi = int(np.ceil(lo)), int(np.floor(hi))
                space = {"type": "int", "low": lo, "high": hi}
                if step not in (None, 1):
                    space["step"] = int(step)
            else:
                space = {"type": "float", "low": float(lo), "high": float(hi)}
                if step is not None:
                    space["step"] = float(step)
        if title and title != name:
            space["title"] = title
        self.params[name] = value
        self.space[name] = space

    # -- assembling -----------------------------------------------------------------------
    def section(self, name: str, origin: str) -> dict[str, Any]:
        # rules in the order of the script's first call of each (the broker sees them in this order)
        self.resolve_indicators()
        closes = self._close_rules()
        by_entry = {r.id: self._rule_dict(r) for r in self.rules}
        rules = [by_entry[x] if kind == "entry" else closes[x] for kind, x in self.order
                 if kind == "entry" or x in closes]
        exit_ = self._exit_dict()
        used = set()
        for r in rules:
            used |= _names_src(r["when"]) | (_names_src(r["price"]) if r.get("price") else set())
        for k, v in exit_.items():
            if k in ("stop_long", "take_long", "stop_short", "take_short"):
                used |= _names_src(v)
        series = self._reachable(used)
        self.notes.extend(n for a, n in self.lone_notes.items() if a in series)
        params = dict(self.params)
        sec: dict[str, Any] = {
            "name": name,
            "title": self.title,
            "params": params,
            "space": self.space,
            "indicators": series,
            "rules": rules,
        }
        if exit_:
            sec["exit"] = exit_
        pine = {"title": self.title, "overlay": self.overlay, "origin": origin}
        if self.shorttitle:
            pine["shorttitle"] = self.shorttitle
        sec["pine"] = pine
        return sec

    def _reachable(self, used: set[str]) -> dict[str, dict]:
        keep, stack = set(), [u.split(".")[0] for u in used]
        while stack:
            n = stack.pop()
            if n in keep or n not in self.series:
                continue
            keep.add(n)
            b = self.series[n]
            if "expr" in b:
                stack.extend(x.split(".")[0] for x in _names_src(b["expr"]))
            for src in b.get("inputs", {}).values():
                stack.extend(x.split(".")[0] for x in _names_src(src))
        return {k: v for k, v in self.series.items() if k in keep}

    def _rule_dict(self, r: _Rule) -> dict[str, Any]:
        d: dict[str, Any] = {"id": r.id, "when": to_source(r.when), "action": r.action, "direction": r.direction}
        if r.type != "market":
            d["type"] = r.type
            d["price"] = to_source(r.price)
        if r.cancel_when_false:
            d["cancel_when_false"] = True
        if r.oca:
            d["oca"] = r.oca
        return d

    def _side_of(self, eid: str, node: dict) -> str:
        rid = self._rule_id(eid, node)
        for r in self.rules:
            if r.id == rid:
                return r.direction
        raise self.fail(node, f"the entry id {eid!r}", "no strategy.entry in the script places it")

    def _close_rules(self) -> dict[int, dict[str, Any]]:
        """Close rules keyed by the position of their first call; one rule per comment.

        Under each condition the calls of one rule must close every entry of the side(s)
        they touch, because an aio close rule closes the whole side.
        """
        groups: dict[str, dict[str, Any]] = {}
        for i, (target, comment, when, node) in enumerate(self.closes):
            rid = self._rule_id(comment, node) if comment else (f"Close_{self._rule_id(target, node)}" if target
                                                               else "CloseAll")
            g = groups.setdefault(rid, {"first": i, "node": node, "by_when": {}})
            w = g["by_when"].setdefault(to_source(when), {"when": when, "targets": set(), "all": False, "node": node})
            if target is None:
                w["all"] = True
            else:
                self._side_of(target, node)
                w["targets"].add(self._rule_id(target, node))
        out = {}
        for rid, g in groups.items():
            directions = set()
            for w in g["by_when"].values():
                if w["all"]:
                    directions.add("both")
                    continue
                sides = {r.direction for r in self.rules if r.id in w["targets"]}
                for side in sides:
                    side_ids = {r.id for r in self.rules if r.direction == side}
                    if not side_ids <= w["targets"]:
                        missing = ", ".join(sorted(side_ids - w["targets"]))
                        raise self.fail(w["node"], f"strategy.close of part of the {side} entries",
                                        f"aio closes a whole side, and {missing} would stay open in TradingView",
                                        f"close every {side} entry under one comment, or use strategy.close_all")
                directions.add("both" if sides == {"long", "short"} else next(iter(sides)))
            if len(directions) != 1:
                raise self.fail(g["node"], f"the close {rid!r} on different sides under different conditions",
                                "one aio close rule closes one side (or both) under one condition",
                                "give the closes of each side their own comment")
            whens = [w["when"] for w in g["by_when"].values()]
            when = whens[0]
            for w in whens[1:]:
                when = Binary("or", when, w)
            if any(r.id == rid for r in self.rules):
                rid = f"{rid}_close"
            out[g["first"]] = {"id": rid, "when": to_source(when), "action": "close", "direction": directions.pop()}
        return out

    def _exit_dict(self) -> dict[str, Any]:
        if self.dist_exits:
            return self._distance_exit_dict()
        if not self.exits:
            return {}
        resolved: dict[str, tuple[str, dict]] = {}
        for key, (src, node) in self.exits.items():
            kind, side = key.split(":")
            if side.startswith("@"):
                side = self._side_of(side[1:], node)
            k = f"{kind}_{side}"
            if k in resolved and resolved[k][0] != src:
                raise self.fail(node, f"different exit levels for {side} entries", "aio has one level per side")
            resolved[k] = (src, node)
        # an exit must cover every entry of its side (aio's levels apply to the side)
        for key, (src, node) in self.exits.items():
            side = key.split(":")[1]
            if side.startswith("@"):
                direction = self._side_of(side[1:], node)
                covered = {self._rule_id(k.split(":@")[1], node) for k in self.exits
                           if ":@" in k and self._side_of(k.split(":@")[1], node) == direction}
                others = {r.id for r in self.rules if r.direction == direction} - covered
                if others:
                    raise self.fail(node, f"strategy.exit for some {direction} entries only",
                                    f"aio's exit levels apply to every {direction} entry, also {', '.join(sorted(others))}")
        out: dict[str, Any] = {k: v[0] for k, v in sorted(resolved.items())
                               if not (k.endswith("_long") and not any(r.direction == "long" for r in self.rules))
                               and not (k.endswith("_short") and not any(r.direction == "short" for r in self.rules))}
        out["id"] = self.exit_id or "Exit"
        return out


def _mentions_color(node: Any) -> bool:
    if isinstance(node, list):
        return any(_mentions_color(x) for x in node)
    if not isinstance(node, dict):
        return False
    if node.get("_type") in ("Attribute", "Call") and (dotted(node.get("value")) == "color"
                                                       or (dotted(node.get("func")) or "").startswith("color.")):
        return True
    return any(_mentions_color(v) for k, v in node.items() if k != "_type")


def _names_src(src: str) -> set[str]:
    from aio.strategy.expr import names, parse

    return names(parse(src))


def _default_range(value: float, kind: str) -> tuple[float, float]:
    """Search range of an input declared without minval/maxval: a quarter to four times its default."""
    v = float(value)
    if v > 0:
        lo, hi = v / 4, v * 4
        if kind == "int":
            lo = max(1.0, np.floor(lo))
    elif v < 0:
        lo, hi = v * 4, v / 4
    else:
        lo, hi = (-10.0, 10.0) if kind == "int" else (-1.0, 1.0)
    return lo, hi


def slug(text: str) -> str:
    s = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower() or "imported"
    return s if re.match(r"^[A-Za-z_]", s) else f"s_{s}"
