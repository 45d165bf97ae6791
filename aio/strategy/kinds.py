"""Strategy kinds: ``strategy.kind`` names a registry plugin (kind ``strategy``) that
turns the strategy section into a validated :class:`~aio.strategy.spec.StrategySpec`.

The built-in ``rules`` kind is :func:`aio.strategy.spec.load_spec` (rules, indicators,
parameter space written out in YAML). A plugin kind is a callable
``(section: dict, path: str) -> StrategySpec``; it may generate the rules from its own
keys (``{kind: my_cross, fast: 5, slow: 20}``). Everything downstream (signals, the
optimiser, the Pine export) works on the spec, so a plugin kind gets all of it.
"""

from __future__ import annotations

from typing import Any, Mapping

from aio.errors import ConfigError


def load_strategy(section: Mapping[str, Any] | None, path: str = "strategy") -> Any:
    """The spec built by the plugin named in ``section['kind']`` (default ``rules``)."""
    from aio.registry import registry
    from aio.strategy.spec import StrategySpec

    section = dict(section or {})
    kind = section.get("kind") or "rules"
    make = registry.get("strategy", str(kind))  # UnknownPluginError lists the kinds
    spec = make(section, path)
    if not isinstance(spec, StrategySpec):
        raise ConfigError(f"strategy kind {kind!r} returned {type(spec).__name__}, not a StrategySpec "
                          f"(a strategy kind plugin is a callable (section, path) -> StrategySpec)")
    return spec
