"""Strategy definitions as typed, validated config.

A strategy is declarative: named parameters (the values of this run) with a search
space (type and range, for the optimiser), indicator bindings, and rules written in
the expression language of :mod:`aio.strategy.expr`. ``strategy.params.NAME=VALUE``
overrides a value; it must lie inside the declared space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from aio.config import build, param
from aio.errors import ConfigError
from aio.strategy.expr import Node, RuleSyntaxError, names, parse

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PRICE_SERIES = ("open", "high", "low", "close", "volume", "hl2", "hlc3", "ohlc4")
# Names a rule may use that come from a model's predictions (never exportable to Pine).
MODEL_PREFIX = "model"


@dataclass
class ParamSpace:
    """Search space of one parameter (freqtrade-style: the default lives in ``params``)."""

    type: Literal["int", "float", "categorical", "bool"] = "float"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None
    # Conditional parameter: only searched/used when another parameter has this value,
    # e.g. {use_stop: true}.
    active_if: dict[str, Any] | None = None
    title: str = ""

    def contains(self, value: Any) -> bool:
        if self.type in ("categorical",):
            return self.choices is None or value in self.choices
        if self.type == "bool":
            return isinstance(value, bool)
        if self.low is not None and value < self.low:
            return False
        if self.high is not None and value > self.high:
            return False
        return True

    def describe(self) -> str:
        if self.type == "categorical":
            return f"one of {self.choices}"
        if self.type == "bool":
            return "true or false"
        fmt = (lambda v: str(int(v))) if self.type == "int" else (lambda v: str(v))
        return f"{self.type} in [{fmt(self.low)}, {fmt(self.high)}]"


@dataclass
class IndicatorBinding:
    """A named series: an indicator call (``fn``) or an expression (``expr``)."""

    fn: str | None = None
    expr: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # indicator input -> series expression
    params: dict[str, Any] = field(default_factory=dict)  # indicator param -> number or param name
    output: str | None = None  # for multi-output indicators: the one `alias` refers to


@dataclass
class RuleSpec:
    id: str
    when: str
    action: Literal["entry", "close"] = "entry"
    direction: Literal["long", "short", "both"] = "long"
    type: Literal["market", "stop", "limit"] = "market"
    price: str | None = None
    cancel_when_false: bool = False
    oca: str | None = None


@dataclass
class ExitSpec:
    """Protective exits of an open position, fixed at the entry decision.

    Distances are in ATR units (``*_atr``) or percent of the decision bar's close
    (``*_pct``); a value may name a strategy parameter.
    """

    stop_atr: Any = None
    take_atr: Any = None
    stop_pct: Any = None
    take_pct: Any = None
    atr_length: Any = 14
    # Price levels as expressions, re-evaluated at every close and applied from the next
    # bar while a position of that side is open (Pine: strategy.exit(stop=, limit=) each bar).
    stop_long: str | None = None
    take_long: str | None = None
    stop_short: str | None = None
    take_short: str | None = None
    id: str = "Exit"

    PRICE_KEYS = ("stop_long", "take_long", "stop_short", "take_short")


@dataclass
class PineSpec:
    template: str = "default"
    title: str | None = None
    overlay: bool = True
    shorttitle: str | None = None


@dataclass
class StrategySpec:
    name: str = param("", help="strategy id")
    title: str = ""
    kind: str = "rules"
    params: dict[str, Any] = field(default_factory=dict)
    space: dict[str, ParamSpace] = field(default_factory=dict)
    indicators: dict[str, IndicatorBinding] = field(default_factory=dict)
    rules: list[RuleSpec] = field(default_factory=list)
    # Relations between parameters that every value set must satisfy (rule language on
    # parameters, e.g. "fast < slow"); the optimiser searches only where they hold.
    constraints: list[str] = field(default_factory=list)
    exit: ExitSpec = field(default_factory=ExitSpec)
    pine: PineSpec = field(default_factory=PineSpec)
    # Parsed forms, filled by validate().
    _asts: dict[str, Node] = field(default_factory=dict, repr=False, compare=False)
    _order: list[str] = field(default_factory=list, repr=False, compare=False)
    _param_deps: dict[str, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    def ast(self, key: str) -> Node:
        return self._asts[key]

    @property
    def indicator_order(self) -> list[str]:
        return list(self._order)

    def with_params(self, values: Mapping[str, Any]) -> "StrategySpec":
        import copy

        new = copy.copy(self)
        new.params = {**self.params, **dict(values)}
        new._check_params("strategy.params")
        new._check_constraints("strategy")
        return new

    def uses_model(self) -> list[str]:
        """Rule ids whose condition or price reads model outputs."""
        out = []
        for r in self.rules:
            keys = names(self._asts[f"rule:{r.id}:when"])
            if r.price:
                keys |= names(self._asts[f"rule:{r.id}:price"])
            keys = self._expand(keys)
            if any(k.split(".")[0] == MODEL_PREFIX for k in keys):
                out.append(r.id)
        return out

    def _expand(self, keys: set[str]) -> set[str]:
        """Follow expression indicators to the names they read."""
        out, stack = set(), list(keys)
        while stack:
            k = stack.pop()
            if k in out:
                continue
            out.add(k)
            base = k.split(".")[0]
            b = self.indicators.get(base)
            if b is not None:
                # parameters passed as indicator arguments shape the series too
                stack.extend(v for v in b.params.values() if isinstance(v, str))
                if b.expr:
                    stack.extend(names(self._asts[f"ind:{base}"]))
                for src in b.inputs.values():
                    stack.extend(names(self._asts[f"ind:{base}:in:{src}"]))
        return out

    # -- validation -------------------------------------------------------------------
    def _check_params(self, path: str) -> None:
        for pname, value in self.params.items():
            sp = self.space.get(pname)
            if sp is None:
                continue
            if sp.type == "int":
                if isinstance(value, bool) or float(value) != int(float(value)):
                    raise ConfigError(f"config key {path}.{pname}={value!r} must be an integer ({sp.describe()})")
                self.params[pname] = int(float(value))
            elif sp.type == "float":
                try:
                    self.params[pname] = float(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"config key {path}.{pname}={value!r} must be a number ({sp.describe()})") from None
            if not sp.contains(self.params[pname]):
                raise ConfigError(
                    f"config key {path}.{pname}={value!r} is out of range: allowed {sp.describe()} "
                    f"(widen strategy.space.{pname} to search further)"
                )

    def _check_constraints(self, path: str) -> None:
        from aio.strategy.evaluate import evaluate

        for i, c in enumerate(self.constraints):
            where = f"{path}.constraints[{i}]"
            try:
                node = parse(str(c))
            except RuleSyntaxError as exc:
                raise ConfigError(f"config key {where}: {exc}") from None
            unknown = sorted(n for n in names(node) if n not in self.params)
            if unknown:
                raise ConfigError(f"config key {where}={c!r} names {unknown}, which are not parameters of "
                                  f"{self.name} ({', '.join(self.params)})")
            scalars = {k: v for k, v in self.params.items() if not isinstance(v, str)}
            if not bool(evaluate(node, scalars, 1)):
                values = ", ".join(f"{k}={self.params[k]}" for k in sorted(names(node)))
                raise ConfigError(f"strategy {self.name} requires {c} but the parameters are {values} "
                                  f"(set them with strategy.params.NAME=VALUE)")

    def validate(self, path: str = "strategy", extra_series: tuple[str, ...] = ()) -> "StrategySpec":
        if not IDENT.match(self.name or ""):
            raise ConfigError(f"config key {path}.name={self.name!r} must be an identifier like my_strategy")
        for pname, sp in self.space.items():
            if not IDENT.match(pname):
                raise ConfigError(f"config key {path}.space.{pname}: parameter names must be identifiers")
            if pname not in self.params:
                raise ConfigError(f"config key {path}.params.{pname} is missing: every parameter in {path}.space needs a value")
            if sp.type in ("int", "float") and (sp.low is None or sp.high is None or sp.low > sp.high):
                raise ConfigError(f"config key {path}.space.{pname} needs low <= high, got low={sp.low} high={sp.high}")
            if sp.type == "categorical" and not sp.choices:
                raise ConfigError(f"config key {path}.space.{pname} is categorical and needs choices")
        for pname in self.params:
            if pname not in self.space:
                raise ConfigError(
                    f"config key {path}.params.{pname} has no search space: add {path}.space.{pname} "
                    f"(known parameters: {', '.join(sorted(self.space))})"
                )
        self._check_params(f"{path}.params")
        self._check_constraints(path)
        taken = set(PRICE_SERIES) | set(self.params)
        asts: dict[str, Node] = {}

        def parse_at(source: Any, key: str, where: str) -> Node:
            try:
                node = parse(str(source)) if not isinstance(source, (int, float)) else parse(repr(source))
            except RuleSyntaxError as exc:
                raise ConfigError(f"config key {where}: {exc}") from None
            asts[key] = node
            return node

        deps: dict[str, set[str]] = {}
        for alias, b in self.indicators.items():
            where = f"{path}.indicators.{alias}"
            if not IDENT.match(alias) or alias in taken or alias == MODEL_PREFIX:
                raise ConfigError(f"config key {where}: indicator names must be identifiers not clashing with prices or parameters")
            if (b.fn is None) == (b.expr is None):
                raise ConfigError(f"config key {where} needs exactly one of fn (an indicator) or expr (an expression)")
            used: set[str] = set()
            if b.expr is not None:
                used |= names(parse_at(b.expr, f"ind:{alias}", f"{where}.expr"))
            else:
                from aio.indicators import get_indicator

                try:
                    idef = get_indicator(b.fn)
                except Exception as exc:
                    raise ConfigError(f"config key {where}.fn={b.fn!r}: {exc}") from None
                for inp in b.inputs:
                    if inp not in idef.inputs:
                        raise ConfigError(f"config key {where}.inputs.{inp}: {b.fn} takes inputs {list(idef.inputs)}")
                for p in b.params:
                    if p not in idef.params:
                        raise ConfigError(f"config key {where}.params.{p}: {b.fn} takes parameters {list(idef.params)}")
                for pv in b.params.values():
                    if isinstance(pv, str) and pv not in self.params:
                        raise ConfigError(f"config key {where}.params: {pv!r} is not a strategy parameter ({', '.join(self.params)})")
                for inp, src in b.inputs.items():
                    used |= names(parse_at(src, f"ind:{alias}:in:{src}", f"{where}.inputs.{inp}"))
                if b.output is not None and b.output not in idef.outputs:
                    raise ConfigError(f"config key {where}.output={b.output!r}: {b.fn} outputs {list(idef.outputs)}")
            deps[alias] = {u.split(".")[0] for u in used}
        self._order = _topo(deps, path)
        known = set(taken) | set(extra_series)
        for alias, b in self.indicators.items():
            known.add(alias)
            if b.fn is not None:
                from aio.indicators import get_indicator

                for o in get_indicator(b.fn).outputs:
                    known.add(f"{alias}.{o}")
        ids = set()
        for i, r in enumerate(self.rules):
            where = f"{path}.rules[{i}]"
            if not IDENT.match(r.id):
                raise ConfigError(f"config key {where}.id={r.id!r} must be an identifier")
            if r.id in ids:
                raise ConfigError(f"config key {where}.id={r.id!r} is used twice; order ids must be unique")
            ids.add(r.id)
            used = names(parse_at(r.when, f"rule:{r.id}:when", f"{where}.when"))
            if r.type != "market":
                if r.price is None:
                    raise ConfigError(f"config key {where}.price is required for a {r.type} order")
                used |= names(parse_at(r.price, f"rule:{r.id}:price", f"{where}.price"))
            if r.action == "entry" and r.direction == "both":
                raise ConfigError(f"config key {where}.direction: an entry must be long or short")
            for u in used:
                if u.split(".")[0] == MODEL_PREFIX:
                    continue
                if u not in known:
                    import difflib

                    close = difflib.get_close_matches(u, sorted(known), n=1)
                    hint = f" Did you mean {close[0]!r}?" if close else ""
                    raise ConfigError(
                        f"config key {where}: unknown name {u!r}.{hint} Rules may use prices "
                        f"({', '.join(PRICE_SERIES)}), parameters, indicators and model.* outputs"
                    )
        for alias in self.indicators:
            for u in deps[alias]:
                if u not in known and u != MODEL_PREFIX:
                    raise ConfigError(f"config key {path}.indicators.{alias}: unknown name {u!r}")
        for k in ("stop_atr", "take_atr", "stop_pct", "take_pct", "atr_length"):
            v = getattr(self.exit, k)
            if isinstance(v, str) and v not in self.params:
                raise ConfigError(f"config key {path}.exit.{k}={v!r} is not a strategy parameter")
        has_dist = any(getattr(self.exit, k) not in (None, 0) for k in ("stop_atr", "take_atr", "stop_pct", "take_pct"))
        for k in ExitSpec.PRICE_KEYS:
            src = getattr(self.exit, k)
            if src is None:
                continue
            if has_dist:
                raise ConfigError(
                    f"config key {path}.exit.{k}: use either price levels (stop_long...) or distances "
                    f"(stop_atr/stop_pct...), not both"
                )
            for u in names(parse_at(src, f"exit:{k}", f"{path}.exit.{k}")):
                if u not in known and u.split(".")[0] != MODEL_PREFIX:
                    raise ConfigError(f"config key {path}.exit.{k}: unknown name {u!r}")
        self._asts = asts
        # which parameters each named series depends on, directly or through others:
        # the indicator cache keys on them, once per evaluation, so it is worked out here
        self._param_deps = {a: frozenset(k for k in self._expand({a}) if k in self.params) for a in self.indicators}
        return self

    def param_deps(self, alias: str) -> frozenset[str]:
        return self._param_deps[alias]


def _topo(deps: dict[str, set[str]], path: str) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(a: str, trail: list[str]) -> None:
        if state.get(a) == 2:
            return
        if state.get(a) == 1:
            raise ConfigError(f"config key {path}.indicators: circular definition {' -> '.join(trail + [a])}")
        state[a] = 1
        for d in sorted(deps[a]):
            if d in deps:
                visit(d, trail + [a])
        state[a] = 2
        order.append(a)

    for a in deps:
        visit(a, [])
    return order


def load_spec(section: Mapping[str, Any] | Any, path: str = "strategy") -> StrategySpec:
    """Build and validate a strategy from its config section.

    ``from: path/to/strategy.yaml`` (or ``library:<id>`` of the default strategy library)
    loads a strategy file like a shipped one; the section's ``params`` still override the
    values of parameters that strategy declares (aio.discover.library.resolve_from).
    """
    from aio.config import _to_plain

    section = dict(_to_plain(section) or {})
    if section.get("from"):
        from aio.discover.library import resolve_from

        section = resolve_from(section)
    section.pop("from", None)
    spec = build(StrategySpec, section, path, ignore=("_target_",))
    return spec.validate(path)
