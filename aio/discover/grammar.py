"""The discovery grammar: the part of the rule language Pine can run, as building blocks.

A candidate is an ordinary strategy (:class:`aio.strategy.StrategySpec` YAML form):
named series from indicators that have a Pine mapping (TA-Lib/TradingView built-ins
and any plugin indicator whose ``IndicatorDef.pine`` is set), price fields, crossings,
comparisons against levels or other series, lags, an entry rule, an optional close rule
and an ATR or percent bracket. Lengths, levels and bracket distances are strategy
parameters with a search space, so the walk-forward tuner can tune them.

:func:`canonical_text` prints any strategy as one canonical line (aliases replaced by
their definitions, parameters by their values, ``and``/``or`` operands sorted); it is
the dedup key and the leaderboard's rule text.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from aio.config import param
from aio.errors import ConfigError
from aio.strategy.expr import Binary, Bool, Call, History, Name, Node, Num, Unary, parse

PRICE_FIELDS = ("open", "high", "low", "close", "hl2", "hlc3", "ohlc4")
# Pine counterparts that are not the same series (warm-up seeding) are replaced by their
# TradingView-exact variant; cumulative series have no level a rule could compare against.
DEFAULT_EXCLUDE = ["CUMSUM", "SUM", "OBV", "OBV_TV", "CORREL", "MAX", "MIN"]
LENGTH_KEYS = ("timeperiod",)


@dataclass
class GrammarConfig:
    """What discovery may build (``discover.grammar``)."""

    indicators: list[str] = field(default_factory=list)  # only these (default: every Pine-mapped one)
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    lengths: list[int] = field(default_factory=lambda: [5, 10, 14, 20, 30, 50])
    lags: list[int] = field(default_factory=lambda: [1, 3, 5, 10])
    max_entry_conditions: int = param(2, ge=1, le=6, help="conditions and-ed into the entry rule")
    max_close_conditions: int = param(1, ge=0, le=4, help="conditions of the optional close rule")
    directions: list[str] = field(default_factory=lambda: ["long", "short"])
    brackets: list[str] = field(default_factory=lambda: ["atr", "pct"])
    stop_atr: list[float] = field(default_factory=lambda: [0.5, 6.0])
    take_atr: list[float] = field(default_factory=lambda: [0.5, 10.0])
    stop_pct: list[float] = field(default_factory=lambda: [0.01, 0.5])
    take_pct: list[float] = field(default_factory=lambda: [0.01, 1.0])
    atr_length: int = param(14, ge=2, le=500)
    level_quantiles: list[float] = field(default_factory=lambda: [0.05, 0.95])  # level search range


# -- building blocks ------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One series family: an indicator output (or a price field) with an optional length."""

    fn: str | None  # None: a price field
    output: str | None = None
    field: str = "close"
    length_key: str | None = None
    scale: str = "price"  # "price": compared with prices/other MAs; "level": with levels

    @property
    def label(self) -> str:
        if self.fn is None:
            return self.field
        return self.fn + (f".{self.output}" if self.output else "")


@dataclass(frozen=True)
class Term:
    block: Block
    length: int | None = None


@dataclass(frozen=True)
class Atom:
    """One condition: ``op`` in xup/xdn (crossings), gt/lt (comparisons), rise/fall (lags)."""

    op: str
    a: Term
    b: Term | None = None  # another series; None: a level (or the lag for rise/fall)
    level: float | None = None
    lag: int | None = None


@dataclass(frozen=True)
class Genome:
    direction: str
    entry: tuple[Atom, ...]
    close: tuple[Atom, ...] = ()
    bracket: str = "atr"  # atr | pct
    stop: float = 2.0
    take: float = 3.0


def pine_blocks(cfg: GrammarConfig) -> list[Block]:
    """Every indicator output with a Pine mapping that reads only price fields."""
    from aio.indicators import builtin_indicators
    from aio.registry import registry

    registry.ensure_discovered()
    defs = {**builtin_indicators(), **{n: p.obj for n, p in registry.plugins["indicator"].items()}}
    want = {s.upper() for s in cfg.indicators}
    skip = {s.upper() for s in cfg.exclude}
    if want:
        unknown = sorted(want - {n.upper() for n in defs})
        if unknown:
            raise ConfigError(f"config key discover.grammar.indicators names unknown indicators {unknown}")
    out = []
    for name, d in sorted(defs.items()):
        if d.pine is None or name.upper() in skip or (want and name.upper() not in want):
            continue
        if not d.pine_exact and d.tv_variant and d.tv_variant in defs:
            continue  # the TradingView-exact twin is in the list
        if not set(d.inputs) <= {"open", "high", "low", "close", "volume"}:
            continue
        length_key = next((k for k in LENGTH_KEYS if k in d.params), None)
        for o in d.outputs:
            out.append(Block(name, o if len(d.outputs) > 1 else None, length_key=length_key))
    if not out:
        raise ConfigError("discover.grammar leaves no indicator with a Pine mapping; widen grammar.indicators")
    return out


class Grammar:
    """Blocks classified on the discovery bars (price-like or level-like) and sampling."""

    def __init__(self, cfg: GrammarConfig, arrays: Mapping[str, np.ndarray]) -> None:
        from aio.strategy.rules import price_env

        self.cfg = cfg
        self.env = price_env(arrays)
        self.n = len(self.env["close"])
        self.blocks: list[Block] = []
        self._levels: dict[tuple[Block, int | None], tuple[float, float, list[float]]] = {}
        close = self.env["close"]
        for b in pine_blocks(cfg):
            x = self.series(Term(b, self.default_length(b)))
            ok = np.isfinite(x)
            if ok.sum() < 10 or np.nanstd(x[ok]) == 0:
                continue
            rel = np.nanmedian(np.abs(x[ok] / close[ok] - 1.0))
            self.blocks.append(replace(b, scale="price" if rel < 0.05 else "level"))
        self.prices = [Block(None, field=f) for f in ("close",)]
        self.price_blocks = [b for b in self.blocks if b.scale == "price"]
        self.level_blocks = [b for b in self.blocks if b.scale == "level"]

    def default_length(self, b: Block) -> int | None:
        return 14 if b.length_key else None

    def series(self, t: Term) -> np.ndarray:
        from aio.indicators import compute_indicator, get_indicator

        if t.block.fn is None:
            return self.env[t.block.field]
        d = get_indicator(t.block.fn)
        p = {t.block.length_key: t.length} if t.block.length_key and t.length else {}
        out = compute_indicator(t.block.fn, {k: self.env[k] for k in d.inputs}, p)
        return out[t.block.output or d.outputs[0]]

    def levels(self, t: Term) -> tuple[float, float, list[float]]:
        """(low, high, starting levels) of a level-like series on the discovery bars."""
        key = (t.block, t.length)
        if key not in self._levels:
            x = self.series(t)
            x = x[np.isfinite(x)]
            lo, hi = np.quantile(x, self.cfg.level_quantiles)
            starts = [float(v) for v in np.quantile(x, [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95])]
            self._levels[key] = (float(lo), float(hi), starts)
        return self._levels[key]

    # -- random genomes -------------------------------------------------------------------
    def term(self, rng: np.random.Generator, scale: str) -> Term:
        pool = self.price_blocks if scale == "price" else self.level_blocks
        b = pool[rng.integers(len(pool))]
        length = int(rng.choice(self.cfg.lengths)) if b.length_key else None
        return Term(b, length)

    def atom(self, rng: np.random.Generator) -> Atom:
        kinds = []
        if self.price_blocks:
            kinds += ["price_cross", "price_cmp", "ma_cross"]
        if self.level_blocks:
            kinds += ["level_cross", "level_cmp", "level_cmp"]
        kinds += ["lag"]
        k = kinds[rng.integers(len(kinds))]
        close = Term(self.prices[0])
        if k == "price_cross":
            return Atom(("xup", "xdn")[rng.integers(2)], close, self.term(rng, "price"))
        if k == "price_cmp":
            return Atom(("gt", "lt")[rng.integers(2)], close, self.term(rng, "price"))
        if k == "ma_cross":
            a, b = self.term(rng, "price"), self.term(rng, "price")
            return Atom(("xup", "xdn")[rng.integers(2)], a, b)
        if k in ("level_cross", "level_cmp"):
            t = self.term(rng, "level")
            starts = self.levels(t)[2]
            op = ("xup", "xdn") if k == "level_cross" else ("gt", "lt")
            return Atom(op[rng.integers(2)], t, None, level=float(starts[rng.integers(len(starts))]))
        pool = self.blocks + self.prices
        b = pool[rng.integers(len(pool))]
        t = Term(b, int(rng.choice(self.cfg.lengths)) if b.length_key else None)
        return Atom(("rise", "fall")[rng.integers(2)], t, lag=int(rng.choice(self.cfg.lags)))

    def single_rules(self) -> list[Genome]:
        """Every one-condition entry rule at default lengths and tail levels, both directions:
        the structures a search should try before combining them (the tuner moves lengths
        and levels later)."""
        c = self.cfg
        close = Term(self.prices[0])
        atoms: list[Atom] = []
        for b in self.level_blocks:
            t = Term(b, self.default_length(b))
            q = self.levels(t)[2]  # quantiles 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95
            for lv in (q[0], q[1], q[2], q[-3], q[-2], q[-1]):
                atoms += [Atom("xup", t, level=lv), Atom("xdn", t, level=lv)]
            atoms += [Atom("lt", t, level=q[1]), Atom("gt", t, level=q[-2])]
        for b in self.price_blocks:
            t = Term(b, self.default_length(b))
            atoms += [Atom("xup", close, t), Atom("xdn", close, t)]
        bracket = c.brackets[0]
        s_rng, t_rng = (c.stop_atr, c.take_atr) if bracket == "atr" else (c.stop_pct, c.take_pct)
        stop, take = _geo_mid(*s_rng), _geo_mid(*t_rng)
        return [Genome(d, (a,), (), bracket, stop, take) for a in atoms for d in c.directions]

    def genome(self, rng: np.random.Generator) -> Genome:
        c = self.cfg
        n_entry = int(rng.integers(1, c.max_entry_conditions + 1))
        n_close = int(rng.integers(0, c.max_close_conditions + 1))
        bracket = c.brackets[rng.integers(len(c.brackets))]
        s_rng, t_rng = (c.stop_atr, c.take_atr) if bracket == "atr" else (c.stop_pct, c.take_pct)
        return Genome(
            direction=c.directions[rng.integers(len(c.directions))],
            entry=tuple(self.atom(rng) for _ in range(n_entry)),
            close=tuple(self.atom(rng) for _ in range(n_close)),
            bracket=bracket,
            stop=_log_uniform(rng, *s_rng),
            take=_log_uniform(rng, *t_rng),
        )

    def mutate(self, g: Genome, rng: np.random.Generator) -> Genome:
        """One local change: an atom replaced, added or dropped, or a bracket rescaled."""
        c = self.cfg
        r = rng.random()
        entry = list(g.entry)
        if r < 0.35:
            entry[rng.integers(len(entry))] = self.atom(rng)
        elif r < 0.55 and len(entry) < c.max_entry_conditions:
            entry.append(self.atom(rng))
        elif r < 0.7 and len(entry) > 1:
            entry.pop(rng.integers(len(entry)))
        elif r < 0.85:
            lo, hi = (c.stop_atr, c.take_atr) if g.bracket == "atr" else (c.stop_pct, c.take_pct)
            return replace(g, stop=_clip(g.stop * math.exp(rng.normal(0, 0.4)), *lo),
                           take=_clip(g.take * math.exp(rng.normal(0, 0.4)), *hi))
        else:
            return replace(g, direction=c.directions[rng.integers(len(c.directions))])
        return replace(g, entry=tuple(entry))

    def cross(self, g1: Genome, g2: Genome, rng: np.random.Generator) -> Genome:
        pool = list(g1.entry) + list(g2.entry)
        k = int(rng.integers(1, min(len(pool), self.cfg.max_entry_conditions) + 1))
        pick = rng.choice(len(pool), size=k, replace=False)
        return replace(g1, entry=tuple(pool[i] for i in sorted(pick)))

    # -- genome -> strategy -------------------------------------------------------------
    def to_spec(self, g: Genome, name: str = "candidate", title: str = "") -> dict[str, Any]:
        """The genome as a StrategySpec mapping (what discover/strategies/<id>.yaml holds)."""
        b = _SpecBuilder(self)
        entry = " and ".join(b.atom(a) for a in g.entry)
        if g.bracket == "atr":
            entry = b.atr_guard(entry)
        rules = [{"id": "Entry", "when": entry, "action": "entry", "direction": g.direction}]
        if g.close:
            rules.append({"id": "Close", "when": " and ".join(b.atom(a) for a in g.close), "action": "close",
                          "direction": g.direction})
        c = self.cfg
        if g.bracket == "atr":
            b.param("stop", g.stop, {"type": "float", "low": c.stop_atr[0], "high": c.stop_atr[1]})
            b.param("take", g.take, {"type": "float", "low": c.take_atr[0], "high": c.take_atr[1]})
            exit_ = {"stop_atr": "stop", "take_atr": "take", "atr_length": c.atr_length}
        else:
            b.param("stop", g.stop, {"type": "float", "low": c.stop_pct[0], "high": c.stop_pct[1]})
            b.param("take", g.take, {"type": "float", "low": c.take_pct[0], "high": c.take_pct[1]})
            exit_ = {"stop_pct": "stop", "take_pct": "take"}
        return {"name": name, "title": title or name, "params": b.params, "space": b.space,
                "indicators": b.indicators, "rules": rules, "exit": exit_}


class _SpecBuilder:
    def __init__(self, grammar: Grammar) -> None:
        self.g = grammar
        self.params: dict[str, Any] = {}
        self.space: dict[str, dict[str, Any]] = {}
        self.indicators: dict[str, dict[str, Any]] = {}
        self._alias: dict[Term, str] = {}

    def param(self, name: str, value: Any, space: dict[str, Any]) -> str:
        self.params[name] = value
        self.space[name] = space
        return name

    def _fresh(self, base: str) -> str:
        base = base.lower().replace(".", "_")
        name, k = base, 2
        while name in self.params or name in self.indicators:
            name, k = f"{base}_{k}", k + 1
        return name

    def series(self, t: Term) -> str:
        if t.block.fn is None:
            return t.block.field
        if t in self._alias:
            return self._alias[t]
        from aio.indicators import get_indicator

        d = get_indicator(t.block.fn)
        alias = self._fresh(t.block.label)
        binding: dict[str, Any] = {"fn": t.block.fn, "inputs": {k: k for k in d.inputs}, "params": {}}
        self.indicators[alias] = binding  # reserve the name before the parameter's
        if t.block.length_key and t.length:
            lo, hi = max(2, t.length // 2), max(3, t.length * 2)
            binding["params"][t.block.length_key] = self.param(self._fresh(f"{alias}_len"), int(t.length),
                                                                {"type": "int", "low": lo, "high": hi})
        if t.block.output:
            binding["output"] = t.block.output
        self._alias[t] = alias
        return alias

    def atr_guard(self, entry: str) -> str:
        """No entry before the bracket's ATR exists: an entry without its stop and target
        would be held until the data ends (Pine behaves the same with a na distance)."""
        n = self.g.cfg.atr_length
        self.indicators["atr_guard"] = {"fn": "ATR", "inputs": {"high": "high", "low": "low", "close": "close"},
                                        "params": {"timeperiod": n}}
        return f"{entry} and atr_guard > 0"

    def atom(self, a: Atom) -> str:
        x = self.series(a.a)
        if a.op in ("rise", "fall"):
            return f"{x} {'>' if a.op == 'rise' else '<'} {x}[{a.lag}]"
        if a.b is not None:
            y = self.series(a.b)
        else:
            lo, hi, _ = self.g.levels(a.a)
            lo, hi = float(f"{min(lo, a.level):.6g}"), float(f"{max(hi, a.level):.6g}")
            y = self.param(self._fresh(f"{x}_lvl"), float(f"{a.level:.6g}"), {"type": "float", "low": lo, "high": hi})
        return {"xup": f"crossover({x}, {y})", "xdn": f"crossunder({x}, {y})",
                "gt": f"{x} > {y}", "lt": f"{x} < {y}"}[a.op]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(round(math.exp(rng.uniform(math.log(lo), math.log(hi))), 4))


def _geo_mid(lo: float, hi: float) -> float:
    return float(round(math.sqrt(lo * hi), 4))


def _clip(v: float, lo: float, hi: float) -> float:
    return float(round(min(max(v, lo), hi), 4))


# -- canonical text -------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e12):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6}


def _flatten(node: Node, op: str) -> list[Node]:
    if isinstance(node, Binary) and node.op == op:
        return _flatten(node.left, op) + _flatten(node.right, op)
    return [node]


def canonical_text(spec: Any, params: Mapping[str, Any] | None = None) -> str:
    """One line that is equal for strategies that compute the same orders.

    Aliases are replaced by their definitions and parameters by their values, so two
    candidates that differ only in naming print the same; ``and``/``or`` operands are
    sorted, and ``a < b`` is printed as ``b > a``.
    """
    p = {**spec.params, **dict(params or {})}

    def series(key: str) -> str:
        base, _, attr = key.partition(".")
        bind = spec.indicators.get(base)
        if bind is None:
            return _fmt(p[key]) if key in p else key
        if bind.expr is not None:
            inner = expr(spec.ast(f"ind:{base}"), 0)
        else:
            from aio.indicators import get_indicator

            d = get_indicator(bind.fn)
            ins = ",".join(expr(spec.ast(f"ind:{base}:in:{bind.inputs[i]}"), 0) if i in bind.inputs else i
                           for i in d.inputs)
            given = {k: (p.get(v, v) if isinstance(v, str) else v) for k, v in bind.params.items()}
            marks = {k: v for k, v in given.items() if isinstance(v, str)}  # structure_text's <name> marks
            full = {**d.resolve_params({k: v for k, v in given.items() if k not in marks}), **marks}
            pars = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(full.items()))
            inner = f"{bind.fn}({ins}{';' + pars if pars else ''})"
        out = attr or bind.output
        return f"{inner}.{out}" if out else inner

    def expr(node: Node, parent: int) -> str:
        if isinstance(node, Num):
            return _fmt(node.value)
        if isinstance(node, Bool):
            return _fmt(node.value)
        if isinstance(node, Name):
            return series(node.key)
        if isinstance(node, History):
            return f"{expr(node.operand, 9)}[{node.offset}]"
        if isinstance(node, Unary):
            return f"-{expr(node.operand, 7)}" if node.op == "-" else f"not {expr(node.operand, 3)}"
        if isinstance(node, Call):
            return f"{node.fn}({', '.join(expr(a, 0) for a in node.args)})"
        if isinstance(node, Binary):
            pr = _PREC[node.op]
            if node.op in ("and", "or"):
                s = f" {node.op} ".join(sorted(expr(x, pr + 1) for x in _flatten(node, node.op)))
            elif node.op in ("<", "<="):
                s = f"{expr(node.right, pr + 1)} {'>' if node.op == '<' else '>='} {expr(node.left, pr + 1)}"
            else:
                s = f"{expr(node.left, pr)} {node.op} {expr(node.right, pr + 1)}"
            return f"({s})" if pr < parent else s
        raise ConfigError(f"cannot print {node!r}")

    rules = []
    for r in spec.rules:
        txt = f"{r.action} {r.direction}"
        if r.type != "market":
            txt += f" {r.type} at {expr(spec.ast(f'rule:{r.id}:price'), 0)}"
        rules.append(f"{txt} when {expr(spec.ast(f'rule:{r.id}:when'), 0)}")
    ex = spec.exit
    exits = []
    for k in ("stop_atr", "take_atr", "stop_pct", "take_pct"):
        v = getattr(ex, k)
        if v not in (None, 0):
            v = p.get(v, v) if isinstance(v, str) else v
            unit = f"ATR({_fmt(p.get(ex.atr_length, ex.atr_length))})" if k.endswith("atr") else "%"
            exits.append(f"{k.split('_')[0]} {_fmt(v)} {unit}")
    for k in ex.PRICE_KEYS:
        if getattr(ex, k) is not None:
            exits.append(f"{k} {expr(spec.ast(f'exit:{k}'), 0)}")
    return "; ".join(sorted(rules) + exits)


def fast_spec(d: Mapping[str, Any]) -> Any:
    """A validated StrategySpec from a mapping the grammar wrote (skips the generic config
    builder, which costs more than a backtest; validation is the same)."""
    from aio.strategy.spec import ExitSpec, IndicatorBinding, ParamSpace, RuleSpec, StrategySpec

    try:
        spec = StrategySpec(
            name=d["name"], title=d.get("title", ""), params=dict(d.get("params") or {}),
            space={k: ParamSpace(**v) for k, v in (d.get("space") or {}).items()},
            indicators={k: IndicatorBinding(**v) for k, v in (d.get("indicators") or {}).items()},
            rules=[RuleSpec(**r) for r in d.get("rules") or []], exit=ExitSpec(**(d.get("exit") or {})),
            constraints=list(d.get("constraints") or []))
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"candidate {d.get('name')!r} is not a strategy mapping: {exc}") from None
    return spec.validate(f"candidate {d['name']}")


def candidate_id(text: str) -> str:
    return "d" + hashlib.sha256(text.encode()).hexdigest()[:10]


def structure_text(spec: Any) -> str:
    """Canonical text with parameter names in place of values: equal for one rule tuned
    differently (a distinct rule for the trial count)."""
    names = {k: k for k in spec.params}
    return canonical_text(spec, {k: f"<{v}>" for k, v in names.items()})


def _is_guard(node: Node) -> bool:
    return isinstance(node, Binary) and isinstance(node.left, Name) and node.left.name == "atr_guard"


def check_limits(spec: Any, cfg: GrammarConfig) -> None:
    """Within the grammar: Pine-mapped indicators only, no model series, rule size limits."""
    from aio.indicators import get_indicator

    for alias, b in spec.indicators.items():
        if b.fn is not None and get_indicator(b.fn).pine is None:
            raise ConfigError(f"indicator {alias}={b.fn} has no Pine mapping; discovery builds only Pine-runnable rules")
    if spec.uses_model():
        raise ConfigError(f"rules {spec.uses_model()} read model.* series, which Pine cannot run")
    for r in spec.rules:
        n = sum(not _is_guard(x) for x in _flatten(spec.ast(f"rule:{r.id}:when"), "and"))
        limit = cfg.max_entry_conditions if r.action == "entry" else max(cfg.max_close_conditions, 1)
        if n > limit:
            raise ConfigError(f"rule {r.id} has {n} conditions; discover.grammar allows {limit}")


__all__ = ["Atom", "Block", "Genome", "Grammar", "GrammarConfig", "Term", "canonical_text", "candidate_id",
           "check_limits", "parse", "pine_blocks", "structure_text"]
