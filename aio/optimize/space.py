"""StrategySpec.space -> Optuna suggestions, grids and constraint checks."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping

import numpy as np

from aio.config import build
from aio.errors import ConfigError
from aio.strategy.spec import ParamSpace, StrategySpec


def search_space(spec: StrategySpec, only: list[str] | None = None,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, ParamSpace]:
    """The parameters to search: ``only`` (default all), entries narrowed by ``overrides``."""
    overrides = dict(overrides or {})
    names = list(only) if only else list(spec.space)
    for n in list(names) + list(overrides):
        if n not in spec.space:
            raise ConfigError(
                f"config key optimize.params/space names {n!r}, which is not a parameter of strategy "
                f"{spec.name!r} (parameters: {', '.join(spec.space)})"
            )
    out = {}
    for n in names:
        sp = spec.space[n]
        if n in overrides:
            merged = {**dataclasses.asdict(sp), **dict(overrides[n])}
            sp = build(ParamSpace, merged, f"optimize.space.{n}")
        out[n] = sp
    return out


def _active(sp: ParamSpace, values: Mapping[str, Any]) -> bool:
    if not sp.active_if:
        return True
    return all(values.get(k) == v for k, v in sp.active_if.items())


def suggest(trial: Any, space: Mapping[str, ParamSpace]) -> dict[str, Any]:
    """Ask the trial for each parameter; conditional ones only when their condition holds.

    Parameters are visited so that a condition's parameter is suggested first.
    """
    values: dict[str, Any] = {}
    pending = list(space)
    while pending:
        progressed = False
        for n in list(pending):
            sp = space[n]
            deps = [k for k in (sp.active_if or {}) if k in space and k not in values and k in pending]
            if deps:
                continue
            pending.remove(n)
            progressed = True
            if not _active(sp, values):
                continue
            values[n] = _suggest_one(trial, n, sp)
        if not progressed:
            raise ConfigError(f"strategy.space: circular active_if among {pending}")
    return values


def _suggest_one(trial: Any, n: str, sp: ParamSpace) -> Any:
    if sp.type == "int":
        return trial.suggest_int(n, int(sp.low), int(sp.high), step=int(sp.step or 1), log=bool(sp.log))
    if sp.type == "float":
        if sp.log:
            return trial.suggest_float(n, float(sp.low), float(sp.high), log=True)
        return trial.suggest_float(n, float(sp.low), float(sp.high), step=float(sp.step) if sp.step else None)
    if sp.type == "bool":
        return trial.suggest_categorical(n, [False, True])
    return trial.suggest_categorical(n, list(sp.choices))


def grid_values(n: str, sp: ParamSpace) -> list[Any]:
    if sp.type == "bool":
        return [False, True]
    if sp.type == "categorical":
        return list(sp.choices)
    if sp.type == "int":
        return list(range(int(sp.low), int(sp.high) + 1, int(sp.step or 1)))
    if not sp.step:
        raise ConfigError(
            f"optimize=grid needs a step for float parameter {n!r}: set optimize.space.{n}.step "
            f"(or strategy.space.{n}.step)"
        )
    k = int(np.floor((sp.high - sp.low) / sp.step + 1e-9))
    return [round(float(sp.low + i * sp.step), 12) for i in range(k + 1)]


def grid(space: Mapping[str, ParamSpace], constraints: list[str] | None = None,
         fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every feasible combination, inactive conditional parameters left out (deduplicated)."""
    names = list(space)
    seen, out = set(), []
    for combo in itertools.product(*(grid_values(n, space[n]) for n in names)):
        values = dict(zip(names, combo))
        values = {n: v for n, v in values.items() if _active(space[n], values)}
        key = tuple(sorted(values.items(), key=lambda kv: kv[0]))
        if key in seen:
            continue
        seen.add(key)
        if feasible({**(fixed or {}), **values}, constraints):
            out.append(values)
    return out


def feasible(values: Mapping[str, Any], constraints: list[str] | None) -> bool:
    """All constraint expressions (rule language, e.g. ``fast < slow``) hold for ``values``."""
    if not constraints:
        return True
    from aio.strategy.evaluate import evaluate
    from aio.strategy.expr import RuleSyntaxError, parse

    for c in constraints:
        try:
            node = parse(c)
        except RuleSyntaxError as exc:
            raise ConfigError(f"config key optimize.constraints: {exc}") from None
        try:
            v = evaluate(node, dict(values), 1)
        except Exception as exc:
            raise ConfigError(f"config key optimize.constraints: {c!r} cannot be evaluated: {exc}") from None
        if not bool(np.all(np.asarray(v))):
            return False
    return True
