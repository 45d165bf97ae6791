"""The plugin registry: discovery from entry points and folders, clear unknown-name errors."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

import pytest

from aio.errors import UnknownPluginError
from aio.registry import ENTRY_POINT_GROUP, Registry


def test_builtins_come_through_the_entry_point_group():
    names = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    assert "builtin" in names  # installed with `pip install -e .`
    reg = Registry()
    reg.discover()
    assert "entry-point:builtin" in reg.loaded_sources
    assert "rules" in reg.names("strategy")


def test_unknown_name_lists_known_and_suggests_close_match():
    reg = Registry()
    reg.discover()
    with pytest.raises(UnknownPluginError) as info:
        reg.get("strategy", "rulez")
    msg = str(info.value)
    assert "unknown strategy plugin 'rulez'" in msg
    assert "Did you mean 'rules'?" in msg
    assert "Known strategy plugins: " in msg and "rules" in msg


def test_unknown_kind_is_an_error():
    reg = Registry()
    with pytest.raises(Exception, match="unknown plugin kind 'colour'"):
        reg.add("colour", "red", object())


def test_folder_plugins_register_with_their_config_node(tmp_path):
    (tmp_path / "my_sizer.py").write_text(textwrap.dedent(
        """
        from dataclasses import dataclass

        @dataclass
        class HalfConfig:
            fraction: float = 0.5

        class Half:
            '''Halves every size.'''
            def __init__(self, cfg):
                self.cfg = cfg

        def register(registry):
            registry.add("sizer", "half_test", Half, config=HalfConfig)
        """
    ))
    (tmp_path / "_private.py").write_text("raise RuntimeError('files starting with _ are not plugins')")
    reg = Registry()
    loaded = reg.load_folder(tmp_path)
    assert [p.endswith("my_sizer.py") for p in loaded] == [True]
    plugin = reg.get_plugin("sizer", "half_test")
    assert plugin.source.endswith("my_sizer.py")
    assert plugin.description == "Halves every size."
    from hydra.core.config_store import ConfigStore

    node = ConfigStore.instance().load("sizer/half_test.yaml").node
    assert node.fraction == 0.5


def test_broken_local_plugin_names_the_file(tmp_path):
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    reg = Registry()
    with pytest.raises(Exception, match="broken.py failed to import"):
        reg.load_folder(tmp_path)


# -- built-ins are declared lazily, and the declarations match the modules (part 7) ---------

HEAVY = ("lancedb", "scipy", "scipy.signal", "torch", "lightning", "talib", "pandas", "optuna", "transformers",
         "numba")


def _heavy_after(code: str, cwd) -> list[str]:
    """Heavy modules loaded after ``code`` runs in a fresh interpreter."""
    import subprocess
    import sys

    script = code + f"\nimport sys\nprint(sorted(set(sys.modules) & set({HEAVY!r})))"
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout.strip().splitlines()[-1])


REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def test_discovery_and_listing_import_no_subsystem(tmp_path):
    code = ("from aio.registry import registry\nregistry.ensure_discovered()\n"
            "[registry.names(k) for k in registry.plugins if k != 'indicator']\n"
            "registry.get_plugin('data', 'synthetic').config\nregistry.get_plugin('model', 'chartnet').config")
    assert _heavy_after(code, tmp_path) == []


def test_validation_imports_no_model_store_or_scipy(tmp_path):
    """A config error is reported before torch/Lightning or scipy.signal load: the model is not
    built to look for its preflight. (The store section's config still imports LanceDB through
    aio/store/__init__.py, and the backtest config numba and scipy through aio/backtest/__init__.py.)"""
    code = ("from tests.conftest import compose_config\nfrom aio.pipeline import validate\n"
            "validate(compose_config('model=chartnet'), 'run')\n")
    loaded = _heavy_after(code, REPO)
    assert not {"torch", "lightning", "scipy.signal"} & set(loaded), loaded


def test_lookup_imports_the_plugin_on_first_use():
    reg = Registry()
    reg.discover()
    plugin = reg.get_plugin("data", "file")
    assert plugin.target == "aio.data.file:FileSource"
    from aio.data.file import FileDataConfig, FileSource

    assert plugin.obj is FileSource and plugin.config is FileDataConfig and plugin.loaded


def test_a_reference_that_does_not_import_names_the_plugin():
    reg = Registry(discovered=True)
    reg.add("data", "ghost", "aio.no_such_module:Source", description="missing")
    assert reg.names("data") == ["ghost"]  # listed without importing
    with pytest.raises(Exception, match=r"data plugin 'ghost'.*aio.no_such_module:Source"):
        reg.get("data", "ghost")


def test_builtin_declarations_match_each_modules_own_registration():
    """aio.builtin declares every built-in by dotted path; each row must be exactly what the
    module's register(registry) adds (object, config, description), and nothing is missing."""
    import importlib

    from aio import builtin

    declared = Registry(discovered=True)
    builtin.register(declared)
    modules = sorted({b.module for b in builtin.BUILTINS} | set(builtin.NO_PLUGINS))
    for module in modules:
        own = Registry(discovered=True)
        importlib.import_module(module).register(own)
        for kind, table in own.plugins.items():
            if kind == "indicator":
                continue  # provided as a family (builtin.PROVIDERS)
            for name, p in table.items():
                assert name in declared.plugins[kind], f"{module} registers {kind}:{name}, aio.builtin does not"
                d = declared.plugins[kind][name]
                assert d.obj is p.obj, (kind, name)
                assert d.config is p.config or (d.config is None and p.config is None), (kind, name)
                assert d.description == p.description, (kind, name)
    for b in builtin.BUILTINS:
        assert b.module in modules


def test_every_kind_is_looked_up_without_error():
    reg = Registry()
    reg.discover()
    for kind in reg.plugins:
        for name in reg.names(kind):
            reg.get(kind, name)  # every declared reference resolves
    assert "rules" in reg.names("strategy")
    assert {"run", "download", "dataset", "train", "optimize", "similar", "analyze"} <= set(reg.names("task"))
    assert "RSI" in reg.names("indicator")


# -- plugins only where the user points (part 4) -----------------------------------------

EVIL = "from pathlib import Path\nPath(__file__).with_suffix('.ran').write_text('ran')\n"


def test_a_plugins_folder_in_the_working_directory_is_not_run(tmp_path, monkeypatch):
    import subprocess
    import sys

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "evil.py").write_text(EVIL)
    env = {k: v for k, v in __import__("os").environ.items() if k != "AIO_PLUGINS_DIR"}
    env["PYTHONPATH"] = str(REPO)
    for args in (["-m", "aio", "--cfg", "job"], ["-m", "aio.plugins"]):
        proc = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert not (tmp_path / "plugins" / "evil.ran").exists(), args
    # named by the user, it runs
    proc = subprocess.run([sys.executable, "-m", "aio.plugins"], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "AIO_PLUGINS_DIR": str(tmp_path / "plugins")}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "plugins" / "evil.ran").exists()


def test_plugin_folders_are_the_projects_and_the_named_ones(tmp_path, monkeypatch):
    from aio.registry import plugin_folders, project_plugins_dir

    (tmp_path / "plugins").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIO_PLUGINS_DIR", raising=False)
    assert project_plugins_dir() == REPO / "plugins"
    assert plugin_folders() == [REPO / "plugins"]
    extra = tmp_path / "extra"
    extra.mkdir()
    monkeypatch.setenv("AIO_PLUGINS_DIR", str(tmp_path / "plugins"))
    assert plugin_folders(extra) == [REPO / "plugins", tmp_path / "plugins", extra]
    with pytest.raises(Exception, match="plugin folder .*nope does not exist"):
        plugin_folders(tmp_path / "nope")


PLUGIN_KINDS = REPO / "tests" / "plugin_kinds"


@pytest.mark.slow
def test_manifest_lists_every_plugin_file_that_ran(run_app, tmp_path):
    import json

    r = run_app("data.end=2024-03-06", f"plugins_dir={PLUGIN_KINDS}")
    manifest = json.loads((r.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["plugin_files"] == [str((REPO / "plugins" / "example_indicators.py").resolve()),
                                        str((PLUGIN_KINDS / "kinds_plugin.py").resolve())]


# -- a plugin of every kind is usable by name (part 9) -----------------------------------


@pytest.fixture()
def kinds_plugin(monkeypatch, fresh_registry):
    """tests/plugin_kinds/ as AIO_PLUGINS_DIR (read before Hydra composes, so its config
    nodes are group choices), in a registry of this test's own."""
    import sys

    monkeypatch.setenv("AIO_PLUGINS_DIR", str(PLUGIN_KINDS))
    fresh_registry.ensure_discovered()
    return sys.modules[next(m for m in sys.modules if m.startswith("aio_local_plugins.kinds_plugin"))]


@pytest.mark.slow
def test_plugin_sizer_is_chosen_with_sizer_name(kinds_plugin, run_app, tmp_path):
    import polars as pl

    full = run_app("data.end=2024-03-06", run_dir=tmp_path / "full")
    half = run_app("data.end=2024-03-06", "sizer=half_test", run_dir=tmp_path / "half")
    q_full = pl.read_csv(full.run_dir / "trades.csv")["qty"]
    q_half = pl.read_csv(half.run_dir / "trades.csv")["qty"]
    assert len(q_full) == len(q_half) > 0
    assert (q_half * 2 - q_full).abs().max() < 1e-9
    # a plugin step chains like a built-in one, with its own keys validated
    with pytest.raises(Exception, match=r"sizer.fraction=2.0 is out of range"):
        run_app("sizer=half_test", "sizer.fraction=2", run_dir=tmp_path / "bad")


@pytest.mark.slow
def test_plugin_strategy_kind_is_acted_on(kinds_plugin, run_app, tmp_path):
    import polars as pl

    builtin = run_app("data.end=2024-03-06", "strategy=sma_cross", run_dir=tmp_path / "rules")
    plugin = run_app("data.end=2024-03-06", "strategy=sma_pair_test", run_dir=tmp_path / "kind")
    assert plugin.strategy.kind == "sma_pair_test"
    a = pl.read_csv(builtin.run_dir / "trades.csv").select("entry_time", "side", "pnl")
    b = pl.read_csv(plugin.run_dir / "trades.csv").select("entry_time", "side", "pnl")
    assert a.height > 0 and a.equals(b)  # the same SMA(10)/SMA(30) cross, generated by the kind


def test_unknown_strategy_kind_lists_the_kinds(kinds_plugin, compose_cfg):
    from aio.pipeline import validate

    with pytest.raises(UnknownPluginError, match=r"unknown strategy plugin 'rulez'.*rules, sma_pair_test"):
        validate(compose_cfg("+strategy.kind=rulez"), "run")


@pytest.mark.slow
def test_plugin_task_runs_its_own_stages(kinds_plugin, run_app):
    r = run_app("task=bars_only_test", "data.end=2024-03-06")
    assert kinds_plugin.CALLS["stage"] == 1
    assert int((r.run_dir / "bar_count.txt").read_text()) == len(r.bars) > 0
    assert not (r.run_dir / "trades.csv").exists()
    assert list(r.timings) == ["ingest", "bars", "count_bars"]


def test_unknown_task_lists_the_registered_ones(kinds_plugin, compose_cfg, tmp_path):
    from aio.errors import ConfigError
    from aio.pipeline import run

    with pytest.raises(ConfigError, match=r"task='bars_only' is not allowed.*bars_only_test"):
        run(compose_cfg("task=bars_only"), tmp_path)


def test_plugin_sampler_and_objective_are_valid_names(kinds_plugin, compose_cfg):
    from aio.config import build
    from aio.optimize.config import OptimizeConfig
    from aio.optimize.samplers import SAMPLERS
    from aio.pipeline import validate

    cfg = compose_cfg("optimize=tpe", "optimize.name=counting_random_test", "optimize.objective=mean_trade_test")
    validate(cfg, "optimize")
    oc = build(OptimizeConfig, cfg.optimize, "optimize")
    sampler = SAMPLERS[oc.name](oc, 3)  # study.py's lookup goes through the registry
    assert type(sampler).__name__ == "RandomSampler" and kinds_plugin.CALLS["sampler"] == 1
    from aio.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optimize.name='tpee' is not allowed.*counting_random_test"):
        validate(compose_cfg("optimize=tpe", "optimize.name=tpee"), "optimize")
    with pytest.raises(UnknownPluginError, match="unknown objective plugin 'sharp'"):
        validate(compose_cfg("optimize=tpe", "optimize.objectives=[sharp]"), "optimize")


@pytest.mark.slow
def test_plugin_sampler_drives_a_search(kinds_plugin, run_app):
    r = run_app("data.end=2024-03-06", "optimize=random", "optimize.name=counting_random_test", "optimize.n_trials=4",
                "optimize.walk_forward.folds=0", "optimize.walk_forward.cv_blocks=1", "optimize.write_plots=false")
    assert kinds_plugin.CALLS["sampler"] >= 1
    assert r.params and set(r.params) >= {"fast", "slow"}


def test_plugin_objective_reads_the_trades(kinds_plugin, tv_bars):
    """value(metrics, result): the plugin computes from the trades table; value(metrics) still
    works for the built-ins, and a trades objective without the result says what it needs."""
    from aio.backtest import BacktestConfig, run_backtest
    from aio.backtest.metrics import compute_metrics
    from aio.registry import registry
    from aio.strategy import load_builtin, signals

    spec = load_builtin("sma_cross")
    arrays = {c: tv_bars.col(c) for c in ("open", "high", "low", "close", "volume")}
    result = run_backtest(tv_bars, signals(spec, arrays, spec.params), BacktestConfig())
    metrics = compute_metrics(result, tv_bars)
    obj = registry.get("objective", "mean_trade_test")
    pnl = result.trades["pnl"].to_list()
    assert len(pnl) > 10
    assert obj.value(metrics, result) == pytest.approx(sum(pnl) / len(pnl), rel=1e-12)
    assert obj.needs_result and not registry.get("objective", "net_profit").needs_result
    assert registry.get("objective", "net_profit").value(metrics) == pytest.approx(metrics["net_profit"])
    with pytest.raises(Exception, match="computes from the trades"):
        obj.value(metrics)


def test_a_named_plugin_folder_that_is_missing_is_a_clear_error(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "AIO_PLUGINS_DIR": str(tmp_path / "nope")}
    for args in (["-m", "aio", "--cfg", "job"], ["-m", "aio.plugins"]):
        proc = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"plugin folder {tmp_path / 'nope'} does not exist" in proc.stderr and "Traceback" not in proc.stderr
