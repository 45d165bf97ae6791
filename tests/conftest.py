"""Shared fixtures. Real reference data lives beside the project (see ../shared/reference)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _reference_dir() -> Path | None:
    env = os.environ.get("AIO_REFERENCE_DIR")
    if env:
        return Path(env)
    default = REPO.parent / "shared" / "reference"
    return default if default.is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def _private_user_cache(tmp_path_factory) -> None:
    """Runs in tests (and their subprocesses) use a throwaway user cache, never the real one."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user-cache"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    ref = _reference_dir()
    if ref is None or not ref.is_dir():
        # a failure, not a skip: the checks against TradingView and Dukascopy are the point
        pytest.fail(f"reference data not found at {ref or REPO.parent / 'shared' / 'reference'}: put the shared folder "
                    "beside the checkout or set AIO_REFERENCE_DIR to its reference/ folder", pytrace=False)
    return ref


@pytest.fixture(scope="session")
def tv_dir(reference_dir: Path) -> Path:
    return reference_dir / "tradingview"


@pytest.fixture(scope="session")
def dukascopy_dir(reference_dir: Path) -> Path:
    return reference_dir / "dukascopy"


@pytest.fixture(scope="session")
def tv_bars(tv_dir):
    """TradingView's EURUSD 1h reference bars through the file source (times are bar opens, US/Eastern)."""
    from aio.bars import bars_from_market
    from aio.config import build
    from aio.data.file import FileDataConfig, FileSource

    cfg = build(FileDataConfig, {"path": str(tv_dir / "ohlcv.csv"), "symbol": "EURUSD", "timezone": "US/Eastern"}, "data")
    return bars_from_market(FileSource(cfg).load())


# -- the app in-process (as lightning-hydra-template's tests do) ---------------------------


def compose_config(*overrides: str, config_name: str = "config"):
    """The config ``python -m aio OVERRIDES`` would run, composed by Hydra in this process."""
    from hydra import compose, initialize_config_dir

    from aio.appconfig import register_experiments

    register_experiments()  # experiments/ as the `experiment` group, plugin config nodes, resolvers
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf"), job_name="test"):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture()
def fresh_registry(monkeypatch):
    """A registry of its own for this test: plugins a test loads do not leak into others."""
    from aio.registry import Registry

    reg = Registry()
    monkeypatch.setattr("aio.registry.registry", reg)
    return reg


@pytest.fixture()
def compose_cfg():
    """``compose_cfg("strategy=tv_rsi", ...)`` -> the composed DictConfig."""
    return compose_config


@pytest.fixture()
def run_app(tmp_path, fresh_registry):
    """``run_app(*overrides, run_dir=None)`` runs ``aio.pipeline.run`` in-process on the composed
    config and returns the Run; the run folder defaults to ``tmp_path / "run"``."""
    from aio.pipeline import run

    def _run(*overrides: str, run_dir: Path | None = None):
        cfg = compose_config(*overrides)
        return run(cfg, run_dir or tmp_path / "run")

    return _run


@pytest.fixture(scope="session")
def small_ai_run(tmp_path_factory):
    """One small chartnet run (3 days of synthetic M1, 32 px charts, one epoch, 2 folds) and its
    pattern library, shared by the model-pipeline and serving tests: (run_dir, store path)."""
    from tests.test_models_pipeline import SMALL, aio

    root = tmp_path_factory.mktemp("ai")
    run_dir, lib = root / "run", root / "lib"
    aio("+experiment=eurusd_14d_ai", "data=synthetic", *SMALL, "model.folds=2", "model.image_size=32",
        "model.channels=[8,16]", "trainer.max_epochs=1", f"store.path={lib}", f"hydra.run.dir={run_dir}")
    return run_dir, lib
