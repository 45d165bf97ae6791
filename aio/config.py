"""Typed configs and their validation.

Hydra composes YAML from ``conf/`` and ``experiments/``; each section that picks a
plugin (``data``, ``strategy``, ``model``...) is then turned into that plugin's own
dataclass by :func:`build`, before any work starts. A wrong value names the key,
the value and what is allowed.

Dataclass fields declare limits with :func:`param`::

    @dataclass
    class SyntheticDataConfig:
        seed: int = param(7, ge=0)
        timeframe: str = param("1m", choices=["1m", "5m", "1h"])
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import MISSING, field
from typing import Any, Callable, Mapping

from aio.errors import ConfigError


def param(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: list[Any] | Callable[[], list[Any]] | None = None,
    help: str = "",
) -> Any:
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "help": help}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _to_plain(value: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, (DictConfig, ListConfig)):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return value


def build(cls: type, mapping: Mapping[str, Any] | None, path: str, *, ignore: tuple[str, ...] = ("name", "_target_")) -> Any:
    """Build dataclass ``cls`` from ``mapping``; errors name ``path.key``."""
    mapping = _to_plain(mapping) or {}
    if dataclasses.is_dataclass(mapping):
        mapping = dataclasses.asdict(mapping)
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"config key {path} must be a mapping, got {mapping!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in mapping if k not in fields and k not in ignore]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, list(fields), n=1)
        prefix = f"{path}." if path else ""
        hint = f" Did you mean {prefix}{close[0]}?" if close else ""
        raise ConfigError(
            f"unknown config key {prefix}{k}.{hint} Allowed keys under {path or 'the top level'}: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name in mapping:
            value = coerce(mapping[name], hints.get(name, Any), key)
            check_limits(value, f.metadata, key)
            kwargs[name] = value
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"config key {key} is required but missing")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config {path}: {exc}") from exc


def check_limits(value: Any, meta: Mapping[str, Any], key: str) -> None:
    if value is None or not meta:
        return
    choices = meta.get("choices")
    if callable(choices):  # e.g. aio.registry.choices("sampler"): whatever is registered now
        choices = choices()
    if choices is not None and value not in choices:
        raise ConfigError(f"config key {key}={value!r} is not allowed; choose one of: {', '.join(map(str, choices))}")
    bounds = [("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
              ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b)]
    for mk, sym, ok in bounds:
        b = meta.get(mk)
        if b is not None and isinstance(value, (int, float)) and not ok(value, b):
            lo = meta.get("ge") if meta.get("ge") is not None else meta.get("gt")
            hi = meta.get("le") if meta.get("le") is not None else meta.get("lt")
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise ConfigError(f"config key {key}={value!r} is out of range: must be {sym} {b} (allowed range {rng})")


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type or raise a ConfigError naming ``key``."""
    value = _to_plain(value)
    if tp is Any or tp is typing.Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"config key {key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key {key}={value!r} is not allowed; choose one of: {', '.join(map(str, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key}={value!r} must be a list")
        inner = args[0] if args else Any
        return [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {key}={value!r} must be a mapping")
        inner = args[1] if len(args) == 2 else Any
        return {k: coerce(v, inner, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"config key {key}={value!r} must be true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"config key {key}={value!r} must be an integer")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"config key {key}={value!r} must be an integer") from None
        if f != int(f):
            raise ConfigError(f"config key {key}={value!r} must be an integer")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key}={value!r} must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key}={value!r} must be a number") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key {key}={value!r} must be a string")
        return str(value)
    return value
