"""One registry of plugin kinds.

Built-ins register exactly like third parties: through the ``aio.plugins``
entry-point group (each entry point is a ``register(registry)`` callable) and
from ``.py`` files in a local plugins folder (each defines ``register(registry)``
or uses the :func:`register` decorator at import time).

A plugin may ship a config node (a dataclass type or a dict); it is stored in
Hydra's ConfigStore under ``group=<config group of the kind>, name=<plugin>`` so
``indicators=my_pack`` works without writing YAML.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable

from aio.errors import AioError, UnknownPluginError

# kind -> the Hydra config group its choices live in (None: not a config group).
KINDS: dict[str, str | None] = {
    "data": "data",
    "bars": "bars",
    "indicator": None,  # single indicators, referenced by name inside indicator sets
    "indicator_set": "indicators",
    "renderer": "renderer",
    "model": "model",
    "sizer": "sizer",
    "strategy": "strategy",
    "objective": None,
    "pine_template": None,
    "sampler": None,
    "store": "store",
    "task": None,
    "proposer": None,  # discovery proposers, chosen by name in discover.proposers
}

ENTRY_POINT_GROUP = "aio.plugins"


@dataclass
class Plugin:
    kind: str
    name: str
    obj: Any
    config: Any = None
    source: str = "builtin"
    description: str = ""


@dataclass
class Registry:
    plugins: dict[str, dict[str, Plugin]] = field(default_factory=lambda: {k: {} for k in KINDS})
    discovered: bool = False
    loaded_sources: list[str] = field(default_factory=list)

    # -- registration -------------------------------------------------------------
    def add(
        self,
        kind: str,
        name: str,
        obj: Any,
        *,
        config: Any = None,
        source: str = "builtin",
        description: str = "",
    ) -> Any:
        if kind not in self.plugins:
            raise AioError(
                f"unknown plugin kind {kind!r}; kinds are: {', '.join(sorted(self.plugins))}"
            )
        desc = description or (getattr(obj, "__doc__", None) or "").strip().splitlines()[0:1]
        if isinstance(desc, list):
            desc = desc[0] if desc else ""
        self.plugins[kind][name] = Plugin(kind, name, obj, config, source, desc)
        if config is not None and KINDS.get(kind):
            _store_config_node(KINDS[kind], name, config)
        return obj

    def register(self, kind: str, name: str, *, config: Any = None, description: str = "") -> Callable:
        """Decorator form of :meth:`add`."""

        def deco(obj: Any) -> Any:
            return self.add(kind, name, obj, config=config, description=description)

        return deco

    # -- lookup ---------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        self.ensure_discovered()
        return sorted(self.plugins.get(kind, {}))

    def get_plugin(self, kind: str, name: str) -> Plugin:
        self.ensure_discovered()
        if kind not in self.plugins:
            raise AioError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(sorted(self.plugins))}")
        table = self.plugins[kind]
        if name not in table:
            known = sorted(table)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            group = KINDS.get(kind)
            where = f" (config group '{group}')" if group else ""
            raise UnknownPluginError(
                f"unknown {kind} plugin {name!r}{where}.{hint} Known {kind} plugins: "
                f"{', '.join(known) if known else '(none)'}. Register one with "
                f"aio.registry.register({kind!r}, NAME) in a file under plugins/ or an "
                f"'{ENTRY_POINT_GROUP}' entry point."
            )
        return table[name]

    def get(self, kind: str, name: str) -> Any:
        return self.get_plugin(kind, name).obj

    # -- discovery ------------------------------------------------------------------
    def ensure_discovered(self, plugins_dir: str | Path | None = None) -> None:
        if not self.discovered:
            self.discover(plugins_dir)

    def discover(self, plugins_dir: str | Path | None = None) -> None:
        self.discovered = True
        for ep in _entry_points():
            try:
                fn = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the others
                raise AioError(f"plugin entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            fn(self)
            self.loaded_sources.append(f"entry-point:{ep.name}")
        # Built-ins also load directly, so a source checkout works before `pip install -e`.
        if "entry-point:builtin" not in self.loaded_sources:
            from aio import builtin

            builtin.register(self)
            self.loaded_sources.append("module:aio.builtin")
        for folder in plugin_folders(plugins_dir):
            self.load_folder(folder)

    def load_folder(self, folder: Path) -> list[str]:
        loaded = []
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            mod_name = f"aio_local_plugins.{path.stem}"
            module = sys.modules.get(mod_name)
            if module is not None and Path(getattr(module, "__file__", "") or "").resolve() != path.resolve():
                # same file name in another folder: a module of its own
                mod_name = f"{mod_name}_{abs(hash(str(path.resolve())))}"
                module = sys.modules.get(mod_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(mod_name, path)
                if spec is None or spec.loader is None:
                    continue
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception as exc:
                    del sys.modules[mod_name]
                    raise AioError(f"local plugin {path} failed to import: {exc}") from exc
            # An already imported module still registers into this registry (a second
            # Registry() must see the same local plugins as the global one).
            reg = getattr(module, "register", None)
            if callable(reg):
                before = {k: set(v) for k, v in self.plugins.items()}
                reg(self)
                for kind, table in self.plugins.items():
                    for name in set(table) - before[kind]:
                        table[name].source = str(path)
            loaded.append(str(path))
            self.loaded_sources.append(str(path))
        return loaded

    def table(self) -> list[tuple[str, str, str, str]]:
        self.ensure_discovered()
        rows = []
        for kind in sorted(self.plugins):
            for name in sorted(self.plugins[kind]):
                p = self.plugins[kind][name]
                rows.append((kind, name, p.source, p.description))
        return rows


def _entry_points() -> Iterable[Any]:
    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except TypeError:  # pragma: no cover - very old importlib.metadata
        return list(entry_points().get(ENTRY_POINT_GROUP, []))


def default_plugins_dir() -> Path | None:
    """./plugins of the working directory, else the repository's plugins/."""
    cwd = Path.cwd() / "plugins"
    if cwd.is_dir():
        return cwd
    repo = Path(__file__).resolve().parent.parent / "plugins"
    return repo if repo.is_dir() else None


def plugin_folders(extra: str | Path | None = None) -> list[Path]:
    """plugins/ always, then `AIO_PLUGINS_DIR` (os.pathsep-separated) and ``extra``: each adds."""
    import os

    candidates = [default_plugins_dir()]
    env = os.environ.get("AIO_PLUGINS_DIR")
    if env:
        candidates += [Path(p) for p in env.split(os.pathsep) if p]
    if extra:
        candidates.append(Path(extra))
    out: list[Path] = []
    for c in candidates:
        if c is not None and c.is_dir() and c.resolve() not in [o.resolve() for o in out]:
            out.append(c)
    return out


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _store_config_node(group: str, name: str, config: Any) -> None:
    """Offer a plugin's config node to Hydra, unless a YAML of that name ships in conf/.

    Hydra would otherwise merge the two and warn (automatic schema matching is
    deprecated); the YAML is the documented default and our own validation
    (aio.config.build) types it against the same dataclass.
    """
    from hydra.core.config_store import ConfigStore

    if (CONF_DIR / group / f"{name}.yaml").is_file():
        return

    node = config
    if isinstance(config, dict):
        node = dict(config)
        node.setdefault("name", name)
    ConfigStore.instance().store(group=group, name=name, node=node)


registry = Registry()


def register(kind: str, name: str, *, config: Any = None, description: str = "") -> Callable:
    """Decorator registering ``obj`` as plugin ``name`` of ``kind`` in the global registry."""
    return registry.register(kind, name, config=config, description=description)


def get(kind: str, name: str) -> Any:
    return registry.get(kind, name)
