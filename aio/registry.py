"""One registry of plugin kinds.

Built-ins register exactly like third parties: through the ``aio.plugins``
entry-point group and from ``.py`` files in the plugin folders the user points at
(each defines ``register(registry)`` or uses the :func:`register` decorator at
import time).

Registration is lazy: an entry may name its object as ``"module:attr"`` (and its
config the same way), plus metadata such as a description; the module is imported
on the first lookup of that entry, never at discovery. Built-ins are declared that
way in :mod:`aio.builtin`, so starting the app, composing a config or listing the
plugins imports none of the heavy subsystems (LanceDB, torch, scipy...). A module
whose ``register(registry)`` adds a whole family (every TA-Lib indicator) is a
*provider* of its kinds: it runs on the first lookup of one of them.

Entry points of group ``aio.plugins``: a name ``KIND.NAME`` (e.g. ``sizer.half``)
registers ``"module:attr"`` lazily under that kind and name; any other name is a
``register(registry)`` callable, run at discovery.

A plugin may ship a config node (a dataclass type or a dict); it is stored in
Hydra's ConfigStore under ``group=<config group of the kind>, name=<plugin>`` so
``indicators=my_pack`` works without writing YAML.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
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
    "strategy": "strategy",  # strategy kinds (`strategy.kind`); a kind's node is a ready strategy
    "objective": None,
    "pine_template": None,
    "sampler": None,
    "store": "store",
    "task": None,
    "proposer": None,  # discovery proposers, chosen by name in discover.proposers
}

ENTRY_POINT_GROUP = "aio.plugins"
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_ref(value: Any) -> bool:
    """``"package.module:attr.sub"``: a lazily imported object."""
    return isinstance(value, str) and bool(_REF.match(value))


def resolve(ref: str) -> Any:
    """Import ``module`` and walk ``attr.sub`` (attributes, or keys of a mapping)."""
    module, _, attrs = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attrs.split("."):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            raise AttributeError(f"{ref}: {part!r} not found")
    return obj


class Plugin:
    """One registered entry. ``obj``/``config`` (and metadata values) given as
    ``"module:attr"`` are imported on first access."""

    def __init__(self, kind: str, name: str, obj: Any, config: Any = None, source: str = "builtin",
                 description: str = "", meta: dict[str, Any] | None = None) -> None:
        self.kind, self.name, self.source = kind, name, source
        self._obj, self._config = obj, config
        self.meta = dict(meta or {})
        self._description = description

    def _load(self, value: Any, what: str) -> Any:
        if not is_ref(value):
            return value
        try:
            return resolve(value)
        except Exception as exc:
            raise AioError(f"{self.kind} plugin {self.name!r} ({self.source}): cannot import its {what} "
                           f"{value}: {type(exc).__name__}: {exc}") from exc

    @property
    def obj(self) -> Any:
        if is_ref(self._obj):
            self._obj = self._load(self._obj, "object")
        return self._obj

    @property
    def config(self) -> Any:
        if is_ref(self._config):
            self._config = self._load(self._config, "config")
        return self._config

    @property
    def loaded(self) -> bool:
        """Has the plugin's code been imported (False: still a ``module:attr`` reference)?"""
        return not is_ref(self._obj)

    @property
    def target(self) -> str:
        """Where the object lives, without importing it."""
        if is_ref(self._obj):
            return self._obj
        o = self._obj
        mod = getattr(o, "__module__", None) or type(o).__module__
        return f"{mod}:{getattr(o, '__qualname__', type(o).__qualname__)}"

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A metadata value (e.g. ``preflight``), imported if it is a reference."""
        value = self.meta.get(key, default)
        if is_ref(value):
            value = self.meta[key] = self._load(value, key)
        return value

    @property
    def description(self) -> str:
        if not self._description and not is_ref(self._obj):
            doc = (getattr(self._obj, "__doc__", None) or "").strip().splitlines()
            self._description = doc[0] if doc else ""
        return self._description

    @description.setter
    def description(self, value: str) -> None:
        self._description = value

    def __repr__(self) -> str:
        return f"Plugin({self.kind}:{self.name} -> {self.target}, source={self.source})"


@dataclass
class Registry:
    plugins: dict[str, dict[str, Plugin]] = field(default_factory=lambda: {k: {} for k in KINDS})
    discovered: bool = False
    loaded_sources: list[str] = field(default_factory=list)
    # plugin .py files that were executed, in order (recorded in each run's manifest)
    plugin_files: list[str] = field(default_factory=list)
    # kind -> "module:register" callables still to run on the first lookup of that kind
    providers: dict[str, list[str]] = field(default_factory=dict)

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
        **meta: Any,
    ) -> Any:
        """Register ``obj`` (or ``"module:attr"``, imported on first lookup) as ``kind``/``name``.

        ``meta`` holds extra declared facts looked up without building the plugin, e.g.
        a model's ``preflight`` (a callable, or ``"module:attr"``, taking the validated
        config; run by ``aio.pipeline.validate`` before any stage).
        """
        if kind not in self.plugins:
            raise AioError(
                f"unknown plugin kind {kind!r}; kinds are: {', '.join(sorted(self.plugins))}"
            )
        self.plugins[kind][name] = Plugin(kind, name, obj, config, source, description, meta)
        if config is not None and KINDS.get(kind):
            _store_config_node(KINDS[kind], name, config)
        return obj

    def register(self, kind: str, name: str, *, config: Any = None, description: str = "", **meta: Any) -> Callable:
        """Decorator form of :meth:`add`."""

        def deco(obj: Any) -> Any:
            return self.add(kind, name, obj, config=config, description=description, **meta)

        return deco

    def add_provider(self, kinds: Iterable[str], ref: str) -> None:
        """``ref`` (``"module:register"``) registers a family of plugins of ``kinds``; it is
        imported and run on the first lookup of any of them."""
        for kind in kinds:
            if kind not in self.plugins:
                raise AioError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(sorted(self.plugins))}")
            self.providers.setdefault(kind, []).append(ref)

    def _provide(self, kind: str) -> None:
        refs = self.providers.pop(kind, [])
        for ref in refs:
            for other in list(self.providers):  # one provider may serve several kinds: run it once
                rest = [r for r in self.providers[other] if r != ref]
                if rest:
                    self.providers[other] = rest
                else:
                    del self.providers[other]
            try:
                fn = resolve(ref)
            except Exception as exc:
                raise AioError(f"plugin provider {ref} failed to import: {type(exc).__name__}: {exc}") from exc
            # Providers are built-ins that run late (on first lookup): an entry a plugin
            # registered earlier under the same name keeps precedence, as at discovery.
            before = {k: dict(t) for k, t in self.plugins.items()}
            fn(self)
            for k, table in before.items():
                for name, plugin in table.items():
                    if plugin.source != "builtin":
                        self.plugins[k][name] = plugin

    # -- lookup ---------------------------------------------------------------------
    def _table(self, kind: str) -> dict[str, Plugin]:
        self.ensure_discovered()
        if kind not in self.plugins:
            raise AioError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(sorted(self.plugins))}")
        if kind in self.providers:
            self._provide(kind)
        return self.plugins[kind]

    def names(self, kind: str) -> list[str]:
        return sorted(self._table(kind))

    def get_plugin(self, kind: str, name: str) -> Plugin:
        table = self._table(kind)
        if name not in table:
            known = sorted(table)
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            group = KINDS.get(kind)
            where = f" (config group '{group}')" if group else ""
            raise UnknownPluginError(
                f"unknown {kind} plugin {name!r}{where}.{hint} Known {kind} plugins: "
                f"{', '.join(known) if known else '(none)'}. Register one with "
                f"aio.registry.register({kind!r}, NAME) in a file under plugins/ (or a folder in "
                f"AIO_PLUGINS_DIR / plugins_dir) or an '{ENTRY_POINT_GROUP}' entry point."
            )
        return table[name]

    def get(self, kind: str, name: str) -> Any:
        return self.get_plugin(kind, name).obj

    # -- discovery ------------------------------------------------------------------
    def ensure_discovered(self, plugins_dir: str | Path | None = None) -> None:
        if not self.discovered:
            self.discover(plugins_dir)
        elif plugins_dir:
            self.load_folder(Path(plugins_dir))

    def discover(self, plugins_dir: str | Path | None = None) -> None:
        self.discovered = True
        for ep in _entry_points():
            kind, dot, name = ep.name.partition(".")
            if dot and kind in self.plugins:
                # `KIND.NAME = "module:attr"`: registered without importing it
                self.add(kind, name, ep.value.split("[")[0].strip(), source=f"entry-point:{ep.name}")
                self.loaded_sources.append(f"entry-point:{ep.name}")
                continue
            try:
                fn = ep.load()
            except Exception as exc:  # a broken third-party plugin must not hide the others
                raise AioError(f"plugin entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            before = {k: set(t) for k, t in self.plugins.items()}
            fn(self)
            if ep.name != "builtin":
                for k, table in self.plugins.items():
                    for n in set(table) - before[k]:
                        table[n].source = f"entry-point:{ep.name}"
            self.loaded_sources.append(f"entry-point:{ep.name}")
        # Built-ins also load directly, so a source checkout works before `pip install -e`.
        if "entry-point:builtin" not in self.loaded_sources:
            from aio import builtin

            builtin.register(self)
            self.loaded_sources.append("module:aio.builtin")
        for folder in plugin_folders(plugins_dir):
            self.load_folder(folder)

    def load_folder(self, folder: Path) -> list[str]:
        """Run every ``*.py`` in ``folder`` (not ``_*.py``); each file runs once per registry."""
        loaded = []
        folder = Path(folder)
        if not folder.is_dir():
            raise AioError(f"plugin folder {folder} does not exist (AIO_PLUGINS_DIR / plugins_dir)")
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            if str(path.resolve()) in self.plugin_files:
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
            self.plugin_files.append(str(path.resolve()))
        return loaded

    def table(self) -> list[tuple[str, str, str, str]]:
        self.ensure_discovered()
        rows = []
        for kind in sorted(self.plugins):
            for name, p in sorted(self._table(kind).items()):
                rows.append((kind, name, p.source, p.description or p.target))
        return rows


def _entry_points() -> Iterable[Any]:
    from importlib.metadata import entry_points

    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except TypeError:  # pragma: no cover - very old importlib.metadata
        return list(entry_points().get(ENTRY_POINT_GROUP, []))


def project_plugins_dir() -> Path | None:
    """The project's own ``plugins/``: next to the ``conf/`` the app composes from.

    Never the current directory: a ``plugins/`` folder wherever the user happens to
    stand is not code they asked to run.
    """
    repo = Path(__file__).resolve().parent.parent
    folder = repo / "plugins"
    return folder if folder.is_dir() and (repo / "conf").is_dir() else None


def plugin_folders(extra: str | Path | None = None) -> list[Path]:
    """The project's plugins/, then the folders in ``AIO_PLUGINS_DIR`` (os.pathsep-separated)
    and ``extra`` (``plugins_dir=``): each adds. A folder named but missing is an error."""
    candidates: list[Path] = []
    own = project_plugins_dir()
    if own is not None:
        candidates.append(own)
    env = os.environ.get("AIO_PLUGINS_DIR")
    named = [Path(p) for p in env.split(os.pathsep) if p] if env else []
    if extra:
        named.append(Path(extra))
    for p in named:
        if not p.is_dir():
            raise AioError(f"plugin folder {p} does not exist: fix AIO_PLUGINS_DIR or plugins_dir")
    out: list[Path] = []
    for c in candidates + named:
        if c.resolve() not in [o.resolve() for o in out]:
            out.append(c)
    return out


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _store_config_node(group: str, name: str, config: Any) -> None:
    """Offer a plugin's config node to Hydra, unless a YAML of that name ships in conf/.

    Hydra would otherwise merge the two and warn (automatic schema matching is
    deprecated); the YAML is the documented default and our own validation
    (aio.config.build) types it against the same dataclass.
    """
    if (CONF_DIR / group / f"{name}.yaml").is_file():
        return
    from hydra.core.config_store import ConfigStore

    if is_ref(config):  # only the (light) config module is imported, never the plugin's code
        config = resolve(config)
    if isinstance(config, dict):
        node = dict(config)
    else:  # a dataclass type or instance: its defaults, as plain values (aio.config.build types them)
        from omegaconf import OmegaConf

        node = OmegaConf.to_container(OmegaConf.structured(config), resolve=False)
    # the section must name its plugin (`sizer=half_test` -> sizer.name == "half_test")
    node.setdefault("name", name)
    ConfigStore.instance().store(group=group, name=name, node=node)


registry = Registry()


def register(kind: str, name: str, *, config: Any = None, description: str = "", **meta: Any) -> Callable:
    """Decorator registering ``obj`` as plugin ``name`` of ``kind`` in the global registry."""
    return registry.register(kind, name, config=config, description=description, **meta)


def get(kind: str, name: str) -> Any:
    return registry.get(kind, name)


def _current() -> Registry:
    # looked up at call time: tests (and embedders) may swap the global registry
    return sys.modules[__name__].registry


def choices(kind: str) -> Callable[[], list[str]]:
    """The registered names of ``kind``, for ``param(choices=...)``: read when a config is validated."""

    def names() -> list[str]:
        return _current().names(kind)

    names.kind = kind  # type: ignore[attr-defined]
    return names


class View(Mapping):
    """A read-only ``name -> object`` mapping of one kind, looked up through the global registry
    (for code written against a plain dict, e.g. ``SAMPLERS[name]``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __getitem__(self, name: str) -> Any:
        return _current().get(self.kind, name)  # UnknownPluginError is a KeyError naming the choices

    def __iter__(self):
        return iter(_current().names(self.kind))

    def __len__(self) -> int:
        return len(_current().names(self.kind))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in _current().names(self.kind)

    def __repr__(self) -> str:
        return f"View({self.kind!r})"
