"""Pine v6 from the same strategy definition the backtester runs.

The AST of every rule is printed, never the rule's source text, so what reaches
TradingView is exactly what was evaluated here. The script is assembled as a
typed :class:`PineDoc`; a template (plugin kind ``pine_template``) turns the doc
into text, so a user can restyle the output without touching the translation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from aio import __version__
from aio.errors import ExportError
from aio.pine.syntax import ident, number, string
from aio.strategy.expr import Binary, Bool, Call, History, Name, Node, Num, Unary
from aio.strategy.spec import MODEL_PREFIX, StrategySpec

PRICE_NAMES = {"open", "high", "low", "close", "volume", "hl2", "hlc3", "ohlc4"}

_FUNC = {
    "crossover": "ta.crossover",
    "crossunder": "ta.crossunder",
    "cross": "ta.cross",
    "abs": "math.abs",
    "min": "math.min",
    "max": "math.max",
    "highest": "ta.highest",
    "lowest": "ta.lowest",
    "rising": "ta.rising",
    "falling": "ta.falling",
    "na": "na",
    "nz": "nz",
}
# Binding strength, to print only the parentheses the AST needs.
_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6}


@dataclass
class PineDoc:
    title: str
    header: list[str] = field(default_factory=list)  # comment lines
    strategy_args: list[tuple[str, str]] = field(default_factory=list)  # (name, pine value)
    inputs: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)


def default_template(doc: PineDoc) -> str:
    args = ", ".join([string(doc.title)] + [f"{k}={v}" for k, v in doc.strategy_args])
    parts = ["//@version=6", *doc.header, f"strategy({args})", ""]
    for block in (doc.inputs, doc.series, doc.conditions, doc.orders, doc.exits, doc.plots):
        if block:
            parts.extend(block)
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def var_name(node_key: str) -> str:
    """Our ``alias.output`` names become ``alias_output`` in Pine."""
    return ident(node_key.replace(".", "_"))


class _Printer:
    def __init__(self, spec: StrategySpec, where: str) -> None:
        self.spec = spec
        self.where = where

    def expr(self, node: Node, parent: int = 0) -> str:
        if isinstance(node, Num):
            v = node.value
            return number(int(v)) if float(v).is_integer() and abs(v) < 1e15 else number(v)
        if isinstance(node, Bool):
            return number(node.value)
        if isinstance(node, Name):
            if node.name == MODEL_PREFIX:
                raise ExportError(
                    f"{self.where} reads the model output {node.key!r}; the model cannot run inside TradingView, "
                    f"so this strategy cannot be exported to Pine (use rules on indicators only)"
                )
            if node.attr is None and node.name in PRICE_NAMES:
                return node.name
            return var_name(node.key)
        if isinstance(node, History):
            inner = self.expr(node.operand, 9)
            return f"{inner}[{node.offset}]"
        if isinstance(node, Unary):
            if node.op == "-":
                return f"-{self.expr(node.operand, 7)}"
            s = f"not {self.expr(node.operand, 3)}"
            return f"({s})" if parent > 3 else s
        if isinstance(node, Binary):
            p = _PREC[node.op]
            left = self.expr(node.left, p)
            # left-associative: a right operand of equal strength needs parentheses
            right = self.expr(node.right, p + 1)
            s = f"{left} {node.op} {right}"
            return f"({s})" if p < parent else s
        if isinstance(node, Call):
            args = ", ".join(self.expr(a) for a in node.args)
            return f"{_FUNC[node.fn]}({args})"
        raise ExportError(f"{self.where}: cannot print {node!r} as Pine")


def _input_line(name: str, value: Any, space) -> str:
    title = string(space.title or name) if space is not None else string(name)
    if space is None or space.type == "float":
        extra = ""
        if space is not None:
            extra = f", minval={number(float(space.low))}, maxval={number(float(space.high))}"
            if space.step:
                extra += f", step={number(float(space.step))}"
        return f"{ident(name)} = input.float({number(float(value))}, {title}{extra})"
    if space.type == "int":
        return (f"{ident(name)} = input.int({int(value)}, {title}, minval={int(space.low)}, "
                f"maxval={int(space.high)})")
    if space.type == "bool":
        return f"{ident(name)} = input.bool({number(bool(value))}, {title})"
    # categorical
    opts = space.choices or [value]
    if all(isinstance(o, str) for o in opts):
        return (f"{ident(name)} = input.string({string(value)}, {title}, "
                f"options=[{', '.join(string(o) for o in opts)}])")
    kind = "int" if all(isinstance(o, int) for o in opts) else "float"
    return (f"{ident(name)} = input.{kind}({number(value)}, {title}, "
            f"options=[{', '.join(number(o) for o in opts)}])")


def _qty_args(bt: Any, sizer: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """strategy() quantity arguments; the sizer's Pine (aio.sizing.pine) refuses what Pine cannot do."""
    from aio.sizing.pine import pine_sizing

    return pine_sizing(sizer, bt).strategy_args


def build_doc(
    spec: StrategySpec,
    params: Mapping[str, Any] | None = None,
    backtest: Any = None,
    sizer: Mapping[str, Any] | None = None,
    synthetic: bool = False,
) -> PineDoc:
    from aio.indicators import get_indicator

    params = {**spec.params, **(params or {})}
    model_rules = spec.uses_model()
    if model_rules:
        raise ExportError(
            f"strategy {spec.name!r} cannot be exported to Pine: rule(s) {', '.join(model_rules)} read model.* "
            f"outputs, and the model cannot run inside TradingView"
        )
    title = spec.pine.title or spec.title or spec.name
    doc = PineDoc(title=f"{title} (SYNTHETIC)" if synthetic else title)
    doc.header.append(f"// Generated by aio {__version__} from strategy {string(spec.name)}; regenerate rather than edit.")
    if synthetic:
        doc.header.append("// SYNTHETIC: the parameters were chosen on SYNTHETIC data, not on market data.")
    args: list[tuple[str, str]] = [("overlay", number(bool(spec.pine.overlay)))]
    if spec.pine.shorttitle:
        args.append(("shorttitle", string(spec.pine.shorttitle)))
    qty_arg = ""
    if backtest is not None:
        commission_map = {"percent": "strategy.commission.percent",
                          "cash_per_order": "strategy.commission.cash_per_order",
                          "cash_per_contract": "strategy.commission.cash_per_contract"}
        args += [("initial_capital", number(float(backtest.initial_capital)))]
        args += _qty_args(backtest, sizer)
        from aio.sizing.pine import pine_sizing

        sizing = pine_sizing(sizer, backtest)
        doc.series.extend(sizing.lines)  # per-order quantity (e.g. ATR risk), used by every entry
        qty_arg = f", qty={sizing.qty}" if sizing.qty else ""
        args += [
            ("commission_type", commission_map[backtest.commission_type]),
            ("commission_value", number(float(backtest.commission))),
            ("slippage", number(int(backtest.slippage_ticks))),
            ("pyramiding", number(int(backtest.pyramiding))),
            ("process_orders_on_close", number(bool(backtest.process_orders_on_close))),
        ]
        account = getattr(backtest, "account_currency", None)
        if account:
            # TradingView converts P&L into the declared currency, as the aio broker did
            args.append(("currency", f"currency.{ident(str(account).upper())}"))
        for side in ("margin_long", "margin_short"):
            # 0 turns TradingView's margin check off, as in the aio broker (Pine v6 defaults to 100)
            args.append((side, number(float(getattr(backtest, side, 0.0) or 0.0))))
        if getattr(backtest, "use_spread", False):
            doc.header.append("// The aio backtest also charged the bid/ask spread; TradingView charts one price, so")
            doc.header.append("// model it with the commission or slippage settings when comparing results.")
    doc.strategy_args = args
    for pname, value in params.items():
        doc.inputs.append(_input_line(pname, value, spec.space.get(pname)))
    for alias in spec.indicator_order:
        b = spec.indicators[alias]
        pr = _Printer(spec, f"indicator {alias!r}")
        if b.expr is not None:
            doc.series.append(f"{ident(alias)} = {pr.expr(spec.ast(f'ind:{alias}'))}")
            continue
        idef = get_indicator(b.fn)
        if idef.pine is None:
            raise ExportError(
                f"indicator {alias!r} uses {b.fn}, which has no Pine counterpart; choose an indicator with a ta.* "
                f"equivalent or register a Pine mapping for it"
            )
        inputs = {}
        for inp in idef.inputs:
            src = b.inputs.get(inp, inp)
            inputs[inp] = pr.expr(spec.ast(f"ind:{alias}:in:{src}")) if inp in b.inputs else inp
        # literals take the type of the indicator's default (a YAML 14.0 length prints as 14)
        literal = idef.resolve_params({k: v for k, v in b.params.items() if not isinstance(v, str)})
        pparams = {k: ident(b.params[k]) if isinstance(b.params.get(k), str) else number(literal[k])
                   for k in idef.params}
        call = idef.pine(inputs, pparams)
        if call.output_exprs:
            for o, e in call.output_exprs.items():
                doc.series.append(f"{var_name(f'{alias}.{o}')} = {e}")
            first = b.output or idef.outputs[0]
            doc.series.append(f"{ident(alias)} = {var_name(f'{alias}.{first}')}")
        elif call.tuple_outputs:
            # a tuple slot we do not keep still needs a name in Pine's destructuring
            names = [var_name(f"{alias}.{o}") for o in call.tuple_outputs]
            doc.series.append(f"[{', '.join(names)}] = {call.expr}")
            first = b.output or idef.outputs[0]
            doc.series.append(f"{ident(alias)} = {var_name(f'{alias}.{first}')}")
        else:
            doc.series.append(f"{ident(alias)} = {call.expr}")
    for r in spec.rules:
        pr = _Printer(spec, f"rule {r.id!r}")
        cond = var_name(f"{r.id}_cond")
        doc.conditions.append(f"{cond} = {pr.expr(spec.ast(f'rule:{r.id}:when'))}")
        if r.action == "entry":
            direction = "strategy.long" if r.direction == "long" else "strategy.short"
            extra = ""
            if r.type == "stop":
                extra += f", stop={pr.expr(spec.ast(f'rule:{r.id}:price'))}"
            elif r.type == "limit":
                extra += f", limit={pr.expr(spec.ast(f'rule:{r.id}:price'))}"
            if r.oca:
                extra += f", oca_name={string(r.oca)}, oca_type=strategy.oca.cancel"
            call = f"strategy.entry({string(r.id)}, {direction}{extra}{qty_arg}, comment={string(r.id)})"
        else:
            if r.direction == "both":
                calls = [f"strategy.close_all(comment={string(r.id)})"]
            else:
                # strategy.close closes by entry id: close every entry of that side
                side_ids = [x.id for x in spec.rules if x.action == "entry" and x.direction == r.direction]
                if not side_ids:
                    raise ExportError(f"rule {r.id!r} closes {r.direction} positions but no rule opens one")
                calls = [f"strategy.close({string(i)}, comment={string(r.id)})" for i in side_ids]
        if r.action == "entry":
            calls = [call]
        doc.orders.append(f"if {cond}")
        doc.orders.extend(f"    {c}" for c in calls)
        if r.cancel_when_false:
            doc.orders.append("else")
            doc.orders.append(f"    strategy.cancel({string(r.id)})")
    doc.exits.extend(_exit_lines(spec, params))
    return doc


def _exit_lines(spec: StrategySpec, params: Mapping[str, Any]) -> list[str]:
    ex = spec.exit

    def val(v):
        if isinstance(v, str):
            return ident(v)
        return None if v in (None, 0) else number(float(v))

    entries = [r for r in spec.rules if r.action == "entry"]
    if any(getattr(ex, k) is not None for k in ex.PRICE_KEYS):
        # levels re-evaluated every bar, like the backtest's per-bar bracket arrays
        lines = []
        pr = _Printer(spec, "exit")
        for r in entries:
            side = r.direction
            args = []
            for kind, pine_arg in (("stop", "stop"), ("take", "limit")):
                key = f"{kind}_{side}"
                if getattr(ex, key) is not None:
                    args.append(f"{pine_arg}={pr.expr(spec.ast(f'exit:{key}'))}")
            if args:
                lines.append(f"strategy.exit({string(ex.id + '_' + r.id)}, {string(r.id)}, {', '.join(args)}, "
                             f"comment={string(ex.id)})")
        return lines
    stop_atr, take_atr, stop_pct, take_pct = (val(ex.stop_atr), val(ex.take_atr), val(ex.stop_pct), val(ex.take_pct))
    if not any((stop_atr, take_atr, stop_pct, take_pct)):
        return []
    lines = []
    if stop_atr or take_atr:
        atr_len = ident(ex.atr_length) if isinstance(ex.atr_length, str) else number(int(ex.atr_length))
        lines.append(f"exit_atr = ta.atr({atr_len})")
    # Distances are fixed at the close that decided the entry, like the backtest.
    lines.append("var float exit_stop_dist = na")
    lines.append("var float exit_take_dist = na")
    any_entry = " or ".join(var_name(f"{r.id}_cond") for r in entries) or "false"
    lines.append(f"if {any_entry}")
    if stop_atr:
        lines.append(f"    exit_stop_dist := {stop_atr} * exit_atr")
    elif stop_pct:
        lines.append(f"    exit_stop_dist := close * {stop_pct} / 100.0")
    if take_atr:
        lines.append(f"    exit_take_dist := {take_atr} * exit_atr")
    elif take_pct:
        lines.append(f"    exit_take_dist := close * {take_pct} / 100.0")
    for r in entries:
        loss = "loss=exit_stop_dist / syminfo.mintick" if (stop_atr or stop_pct) else None
        profit = "profit=exit_take_dist / syminfo.mintick" if (take_atr or take_pct) else None
        args = ", ".join(a for a in (loss, profit) if a)
        lines.append(f"strategy.exit({string(ex.id + '_' + r.id)}, {string(r.id)}, {args}, comment={string(ex.id)})")
    return lines


def export_strategy(
    spec: StrategySpec,
    params: Mapping[str, Any] | None = None,
    backtest: Any = None,
    sizer: Mapping[str, Any] | None = None,
    synthetic: bool = False,
    template: str | None = None,
) -> str:
    from aio.registry import registry

    doc = build_doc(spec, params, backtest, sizer, synthetic)
    tpl = registry.get("pine_template", template or spec.pine.template)
    return tpl(doc)
