"""Declarative rule strategies: spec (config) -> AST -> numpy Signals / Pine v6."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aio.strategy.expr import RuleSyntaxError, parse
from aio.strategy.rules import SeriesCache, series_env, signals
from aio.strategy.spec import ParamSpace, RuleSpec, StrategySpec, load_spec

__all__ = [
    "ParamSpace", "RuleSpec", "RuleSyntaxError", "SeriesCache", "StrategySpec",
    "load_spec", "load_builtin", "parse", "series_env", "signals", "register",
]

CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf" / "strategy"


class RuleStrategy:
    """The ``rules`` strategy kind: a validated :class:`StrategySpec` and its evaluator."""

    def __init__(self, spec: StrategySpec) -> None:
        self.spec = spec

    def signals(self, arrays, params=None, extra=None, cache=None):
        return signals(self.spec, arrays, params, extra, cache)


def load_builtin(name: str, **params: Any) -> StrategySpec:
    """A shipped strategy (conf/strategy/NAME.yaml), optionally with parameter values."""
    import yaml

    path = CONF_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
        from aio.errors import UnknownPluginError

        raise UnknownPluginError(f"unknown strategy {name!r}; shipped strategies: {', '.join(known)}")
    section = yaml.safe_load(path.read_text())
    section["params"] = {**section.get("params", {}), **params}
    return load_spec(section)


def register(registry) -> None:
    # a strategy kind is a callable (section, path) -> StrategySpec (aio/strategy/kinds.py)
    registry.add("strategy", "rules", load_spec, description="declarative rule strategy (conf/strategy/*.yaml)")
