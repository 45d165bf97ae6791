"""The top-level run config: schema of the fixed keys, experiment presets, validation.

Plugin-chosen sections (``data``, ``bars``, ``strategy``, ``model``...) carry a
``name`` and are validated against the chosen plugin's own dataclass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from aio.config import build, param
from aio.errors import ConfigError

from aio.registry import choices

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunSection:
    # tasks are registry entries (kind ``task``): pipeline.TASK_STAGES and any plugin task
    task: str = param("run", choices=choices("task"), help="what to run: the whole experiment or one part")
    seed: int = param(42, ge=0)
    experiment: str | None = None
    plugins_dir: str | None = None
    log_level: str = param("INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def experiments_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("AIO_EXPERIMENTS_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path.cwd() / "experiments")
    dirs.append(REPO / "experiments")
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r.is_dir() and r not in seen:
            seen.add(r)
            out.append(r)
    return out


def run_name(experiment: Any = None, strategy: Any = None, overrides: Any = None) -> str:
    """A run folder's name part: the experiment, else the strategy, else ``run`` (never ``None``).

    ``overrides`` (a multirun's ``hydra.overrides.task``): when they sweep the strategy
    (``strategy=a,b``) the sweep folder says ``strategy-sweep``, not the first strategy.
    """
    import re

    def clean(v: Any) -> str:
        return re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(v)).strip("-") or "run"

    if experiment not in (None, "", "None", "null"):
        return clean(experiment)
    for o in list(overrides or []):
        key, _, value = str(o).lstrip("+~").partition("=")
        if key == "strategy" and "," in value:
            return "strategy-sweep"
    if strategy not in (None, "", "None", "null"):
        return clean(strategy)
    return "run"


def sweep_dir(base: str, stamp: str, experiment: Any = None, strategy: Any = None, overrides: Any = None) -> str:
    """``BASE/STAMP_NAME`` for a multirun. Hydra resolves the sweep folder once for the sweep
    and again inside each job (with that job's overrides, where ``strategy=a,b`` became
    ``strategy=a``); a job finds the folder its sweep already made, so all jobs share it."""
    made = sorted(p for p in Path(base).glob(f"{stamp}_*") if p.is_dir()) if Path(base).is_dir() else []
    if made:
        return str(Path(base) / made[-1].name)
    return str(Path(base) / f"{stamp}_{run_name(experiment, strategy, overrides)}")


def register_resolvers() -> None:
    """``aio.run_name`` / ``aio.sweep_dir`` for conf/hydra's run folders (never ``None``)."""
    if not OmegaConf.has_resolver("aio.run_name"):
        OmegaConf.register_new_resolver("aio.run_name", run_name)
    if not OmegaConf.has_resolver("aio.sweep_dir"):
        OmegaConf.register_new_resolver("aio.sweep_dir", sweep_dir)


def register_experiments() -> list[str]:
    """Offer ``experiments/*.yaml`` to Hydra as the ``experiment`` group (package _global_)."""
    from hydra.core.config_store import ConfigStore

    register_resolvers()
    cs = ConfigStore.instance()
    names = []
    for d in reversed(experiments_dirs()):  # earlier dirs win
        for path in sorted(d.glob("*.yaml")):
            node = OmegaConf.load(path)
            cs.store(group="experiment", name=path.stem, node=node, package="_global_")
            names.append(path.stem)
    # Plugins may ship config nodes (e.g. indicators=my_pack): load them before composing.
    from aio.registry import registry

    registry.ensure_discovered()
    return sorted(set(names))


def section(cfg: DictConfig, key: str) -> dict[str, Any]:
    node = cfg.get(key)
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def plugin_section(kind: str, cfg: DictConfig, key: str | None = None) -> tuple[Any, Any]:
    """(registry entry, validated config) for the section ``key`` (default: the kind's group).

    Only the plugin's config type is imported, not its code: validating ``store``
    does not load LanceDB.
    """
    from aio.registry import KINDS, registry

    key = key or KINDS.get(kind) or kind
    sec = section(cfg, key)
    name = sec.get("name")
    if not name:
        raise ConfigError(f"config section {key} needs a 'name' naming the {kind} plugin; known: {', '.join(registry.names(kind))}")
    plugin = registry.get_plugin(kind, name)
    if plugin.config is None or isinstance(plugin.config, dict):
        return plugin, sec
    # a plugin may ship its node as a dataclass instance (its defaults) or as the type
    schema = plugin.config if isinstance(plugin.config, type) else type(plugin.config)
    return plugin, build(schema, sec, key)


def plugin_config(kind: str, cfg: DictConfig, key: str | None = None) -> tuple[Any, Any]:
    """(plugin object, its validated config) for the section ``key`` (default: the kind's group)."""
    plugin, config = plugin_section(kind, cfg, key)
    return plugin.obj, config


# Registered on import: Hydra resolves run folders in every process that runs a job (the
# joblib launcher's workers import the app, not main()).
register_resolvers()


def run_section(cfg: DictConfig) -> RunSection:
    keys = {k: cfg.get(k) for k in ("task", "seed", "experiment", "plugins_dir", "log_level") if k in cfg}
    return build(RunSection, keys, "")
