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
        pytest.skip("reference data not found: set AIO_REFERENCE_DIR to the shared/reference folder")
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
