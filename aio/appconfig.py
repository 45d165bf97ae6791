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

REPO = Path(__file__).resolve().parent.parent
TASKS = ("run", "download", "dataset", "train", "optimize", "similar", "analyze", "discover", "strategies")


@dataclass
class RunSection:
    task: str = param("run", choices=list(TASKS), help="what to run: the whole experiment or one part")
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


def register_experiments() -> list[str]:
    """Offer ``experiments/*.yaml`` to Hydra as the ``experiment`` group (package _global_)."""
    from hydra.core.config_store import ConfigStore

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


def plugin_config(kind: str, cfg: DictConfig, key: str | None = None) -> tuple[Any, Any]:
    """(plugin object, its validated config) for the section ``key`` (default: the kind's group)."""
    from aio.registry import KINDS, registry

    key = key or KINDS.get(kind) or kind
    sec = section(cfg, key)
    name = sec.get("name")
    if not name:
        raise ConfigError(f"config section {key} needs a 'name' naming the {kind} plugin; known: {', '.join(registry.names(kind))}")
    plugin = registry.get_plugin(kind, name)
    if plugin.config is None or isinstance(plugin.config, dict):
        return plugin.obj, sec
    # a plugin may ship its node as a dataclass instance (its defaults) or as the type
    schema = plugin.config if isinstance(plugin.config, type) else type(plugin.config)
    return plugin.obj, build(schema, sec, key)


def run_section(cfg: DictConfig) -> RunSection:
    keys = {k: cfg.get(k) for k in ("task", "seed", "experiment", "plugins_dir", "log_level") if k in cfg}
    return build(RunSection, keys, "")
