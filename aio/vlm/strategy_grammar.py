"""The strategy language a vision-language model writes, as an llguidance grammar.

A proposal is one line in a small rule language built from the discovery grammar's
blocks (:mod:`aio.discover.grammar`): the Pine-mapped indicators classified on the
proposal window (price-like or level-like), the configured lengths and lags, the
direction, and an ATR or percent bracket from a fixed grid inside the configured ranges::

    long when RSI(14) crosses above 30.5 and close > EMA(20); close when RSI(14) > 70; stop 2 ATR, take 3 ATR

Conditions (P: ``close`` or a price-like series, L: a level-like series, S: either):

- ``P crosses above|below P`` / ``P > P`` / ``P < P``
- ``L crosses above|below NUMBER`` / ``L > NUMBER`` / ``L < NUMBER``
- ``S rises|falls over K bars`` (K from ``grammar.lags``)

:func:`lark_grammar` compiles exactly this language (series names, lengths, lags and
bracket values enumerated, numbers bounded), so constrained decoding can only write a
line that :func:`parse_proposal` turns into a :class:`~aio.discover.grammar.Genome`,
and ``Grammar.to_spec`` into a strategy that validates. :func:`render_proposal` is the
inverse (training targets and the leaderboard shown to the model use it).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from aio.errors import AioError

NUMBER_RE = r"-?(0|[1-9][0-9]{0,6})(\.[0-9]{1,6})?"
GRID_POINTS = 8


class ProposalError(AioError):
    """A text that is not a proposal of this grammar (only possible without constraints)."""


def _lit(s: str) -> str:
    return json.dumps(s)  # a Lark string literal is a JSON string


def _alts(words: list[str]) -> str:
    return " | ".join(_lit(w) for w in words)


def _fmt(v: float) -> str:
    s = f"{v:.3g}"
    if "e" in s:
        s = f"{v:.6f}".rstrip("0").rstrip(".")
    return s


def bracket_grid(lo: float, hi: float, n: int = GRID_POINTS) -> list[str]:
    """``n`` geometric steps from lo to hi (3 significant digits, all inside [lo, hi])."""
    out: list[str] = []
    for i in range(n):
        v = math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1))
        s = _fmt(min(max(float(_fmt(v)), lo), hi))
        if float(s) < lo or float(s) > hi:
            s = _fmt(lo) if i == 0 else _fmt(hi)
        if s not in out:
            out.append(s)
    return out


@dataclass(frozen=True)
class StrategyLanguage:
    """The vocabulary of one proposal window (what the grammar enumerates)."""

    price: tuple[str, ...]  # price-like series labels (with a length?) -> see lengths
    level: tuple[str, ...]
    has_length: frozenset[str]
    lengths: tuple[int, ...]
    lags: tuple[int, ...]
    directions: tuple[str, ...]
    max_entry: int
    max_close: int
    stops: dict[str, tuple[str, ...]]  # bracket kind -> grid of stop values
    takes: dict[str, tuple[str, ...]]

    @classmethod
    def from_grammar(cls, g: Any) -> "StrategyLanguage":
        c = g.cfg
        blocks = g.price_blocks + g.level_blocks
        brackets = [b for b in c.brackets if b in ("atr", "pct")] or ["atr"]
        return cls(
            price=tuple(b.label for b in g.price_blocks), level=tuple(b.label for b in g.level_blocks),
            has_length=frozenset(b.label for b in blocks if b.length_key),
            lengths=tuple(sorted({int(x) for x in c.lengths})), lags=tuple(sorted({int(x) for x in c.lags})),
            directions=tuple(c.directions), max_entry=int(c.max_entry_conditions), max_close=int(c.max_close_conditions),
            stops={b: tuple(bracket_grid(*(c.stop_atr if b == "atr" else c.stop_pct))) for b in brackets},
            takes={b: tuple(bracket_grid(*(c.take_atr if b == "atr" else c.take_pct))) for b in brackets},
        )

    def max_chars(self) -> int:
        """Length of the longest line the grammar accepts (bounds the tokens to generate)."""
        series = max(len(x) for x in (*self.price, *self.level, "close")) + 2 + max(len(str(n)) for n in self.lengths)
        num = len("-") + 7 + 1 + 6
        cond = max(2 * series + len(" crosses above "), series + len(" crosses above ") + num,
                   series + len(" rises over  bars") + max(len(str(k)) for k in self.lags))
        brk = len("; stop  ATR, take  ATR") + max(len(v) for vs in (*self.stops.values(), *self.takes.values()) for v in vs)
        return (len("short when ") + self.max_entry * (cond + 5) + len("; close when ")
                + self.max_close * (cond + 5) + brk + 8)


def lark_grammar(lang: StrategyLanguage) -> str:
    """The Lark grammar (llguidance dialect) of one proposal line."""
    lines = []
    entry = "cond" + "".join(f' (" and " cond' for _ in range(lang.max_entry - 1)) + ")?" * (lang.max_entry - 1)
    close = ""
    if lang.max_close > 0:
        inner = "cond" + "".join(f' (" and " cond' for _ in range(lang.max_close - 1)) + ")?" * (lang.max_close - 1)
        close = f' ("; close when " {inner})?'
    lines.append(f'start: DIRECTION " when " {entry}{close} exit')
    lines.append(f"DIRECTION: {_alts(list(lang.directions))}")
    exits = []
    for b in lang.stops:
        unit = " ATR" if b == "atr" else "%"
        name = b.upper()
        lines.append(f"STOP_{name}: {_alts(list(lang.stops[b]))}")
        lines.append(f"TAKE_{name}: {_alts(list(lang.takes[b]))}")
        exits.append(f'"; stop " STOP_{name} {_lit(unit + ", take ")} TAKE_{name} {_lit(unit)}')
    lines.append("exit: " + " | ".join(exits))
    lines.append(f'LENGTH: {_alts([str(n) for n in lang.lengths])}')
    lines.append(f'LAG: {_alts([str(n) for n in lang.lags])}')
    lines.append(f"NUMBER: /{NUMBER_RE}/")

    def series_rule(name: str, labels: tuple[str, ...], extra: list[str]) -> None:
        alts = list(extra)
        plain = [x for x in labels if x not in lang.has_length]
        longer = [x for x in labels if x in lang.has_length]
        alts += [_lit(x) for x in plain]
        alts += [f'{_lit(x + "(")} LENGTH ")"' for x in longer]
        lines.append(f"{name}: " + " | ".join(alts))

    conds = []
    series_rule("pser", lang.price, ['"close"'])
    conds += ['pser " crosses above " pser', 'pser " crosses below " pser', 'pser " > " pser', 'pser " < " pser']
    if lang.level:
        series_rule("lser", lang.level, [])
        conds += ['lser " crosses above " NUMBER', 'lser " crosses below " NUMBER', 'lser " > " NUMBER',
                  'lser " < " NUMBER']
        conds += ['lser " rises over " LAG " bars"', 'lser " falls over " LAG " bars"']
    conds += ['pser " rises over " LAG " bars"', 'pser " falls over " LAG " bars"']
    lines.append("cond: " + " | ".join(conds))
    return "\n".join(lines) + "\n"


# -- text <-> genome --------------------------------------------------------------------

_TERM = re.compile(r"^([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)(?:\((\d+)\))?$")
_COND = re.compile(r"^(?P<a>\S+) (?:(?P<x>crosses (?:above|below)) (?P<b>\S+)|(?P<cmp>[<>]) (?P<c>\S+)|"
                   r"(?P<lag>rises|falls) over (?P<k>\d+) bars)$")
_EXIT = re.compile(r"^stop (?P<s>\S+?)(?P<u1> ATR|%), take (?P<t>\S+?)(?P<u2> ATR|%)$")


def _term(text: str, g: Any) -> Any:
    from aio.discover.grammar import Block, Term

    m = _TERM.match(text)
    if not m:
        raise ProposalError(f"{text!r} is not a series")
    label, length = m.group(1), m.group(2)
    if label in ("open", "high", "low", "close", "hl2", "hlc3", "ohlc4"):
        if length:
            raise ProposalError(f"price field {label} takes no length")
        return Term(Block(None, field=label))
    for b in g.blocks:
        if b.label == label:
            if bool(b.length_key) != bool(length):
                raise ProposalError(f"series {label} {'needs' if b.length_key else 'takes no'} length")
            return Term(b, int(length) if length else None)
    raise ProposalError(f"unknown series {label!r}")


def _is_number(s: str) -> bool:
    return re.fullmatch(NUMBER_RE, s) is not None


def _atom(text: str, g: Any) -> Any:
    from aio.discover.grammar import Atom

    m = _COND.match(text)
    if not m:
        raise ProposalError(f"condition {text!r} is not of the grammar")
    a = _term(m.group("a"), g)
    if m.group("lag"):
        return Atom("rise" if m.group("lag") == "rises" else "fall", a, lag=int(m.group("k")))
    op_word = m.group("x")
    other = m.group("b") if op_word else m.group("c")
    op = ({"crosses above": "xup", "crosses below": "xdn"}[op_word] if op_word
          else ("gt" if m.group("cmp") == ">" else "lt"))
    if _is_number(other):
        if a.block.scale != "level":
            raise ProposalError(f"{m.group('a')} is price-like; compare it with a series, not a number")
        return Atom(op, a, None, level=float(other))
    b = _term(other, g)
    if a.block.scale == "level" or b.block.scale == "level":
        raise ProposalError(f"{text!r} compares a level-like series with another series")
    return Atom(op, a, b)


def parse_proposal(text: str, g: Any) -> Any:
    """A proposal line -> :class:`~aio.discover.grammar.Genome` (ProposalError if it is not one)."""
    from aio.discover.grammar import Genome

    parts = text.strip().split("; ")
    if len(parts) < 2:
        raise ProposalError(f"proposal {text[:120]!r} has no exit part")
    head = parts[0].split(" when ", 1)
    if len(head) != 2 or head[0] not in g.cfg.directions:
        raise ProposalError(f"proposal {text[:120]!r} must start with a direction and 'when'")
    entry = tuple(_atom(c, g) for c in head[1].split(" and "))
    close: tuple = ()
    rest = parts[1:]
    if rest[0].startswith("close when "):
        close = tuple(_atom(c, g) for c in rest[0][len("close when "):].split(" and "))
        rest = rest[1:]
    if len(rest) != 1:
        raise ProposalError(f"proposal {text[:120]!r} must end with one 'stop ..., take ...' part")
    m = _EXIT.match(rest[0])
    if not m or m.group("u1") != m.group("u2"):
        raise ProposalError(f"exit {rest[0]!r} is not 'stop X ATR, take Y ATR' or 'stop X%, take Y%'")
    if len(entry) > g.cfg.max_entry_conditions or len(close) > g.cfg.max_close_conditions:
        raise ProposalError(f"proposal {text[:120]!r} has more conditions than discover.grammar allows")
    return Genome(head[0], entry, close, "atr" if m.group("u1") == " ATR" else "pct", float(m.group("s")),
                  float(m.group("t")))


def _term_text(t: Any) -> str:
    return t.block.label + (f"({t.length})" if t.length else "")


def _atom_text(a: Any) -> str:
    x = _term_text(a.a)
    if a.op in ("rise", "fall"):
        return f"{x} {'rises' if a.op == 'rise' else 'falls'} over {a.lag} bars"
    y = _term_text(a.b) if a.b is not None else _fmt_level(a.level)
    return {"xup": f"{x} crosses above {y}", "xdn": f"{x} crosses below {y}", "gt": f"{x} > {y}",
            "lt": f"{x} < {y}"}[a.op]


def _fmt_level(v: float) -> str:
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def render_proposal(genome: Any, lang: StrategyLanguage | None = None) -> str:
    """The proposal line of a genome (bracket values snapped to the language's grid)."""
    def snap(v: float, grid: tuple[str, ...] | None) -> str:
        if not grid:
            return _fmt(v)
        return min(grid, key=lambda s: abs(math.log(float(s)) - math.log(max(v, 1e-12))))

    unit = " ATR" if genome.bracket == "atr" else "%"
    s = snap(genome.stop, lang.stops.get(genome.bracket) if lang else None)
    t = snap(genome.take, lang.takes.get(genome.bracket) if lang else None)
    out = f"{genome.direction} when " + " and ".join(_atom_text(a) for a in genome.entry)
    if genome.close:
        out += "; close when " + " and ".join(_atom_text(a) for a in genome.close)
    return out + f"; stop {s}{unit}, take {t}{unit}"


__all__ = ["ProposalError", "StrategyLanguage", "bracket_grid", "lark_grammar", "parse_proposal", "render_proposal"]
