"""kill -9 a paper run at exact journal positions, restart the same command: same trades, no duplicates."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests._redis_server import redis_server, redis_url  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
BASE = ["task=paper", "strategy=tv_macd", "data=synthetic", "data.start=2024-03-04", "data.end=2024-03-05",
        "live.batch=700"]


def _paper(run_dir: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("AIO_LIVE_KILL_AT", None)
    if kill_at:
        env["AIO_LIVE_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "aio", *BASE, *extra, f"hydra.run.dir={run_dir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _journal_facts(run_dir: Path) -> tuple[int, int, int]:
    db = sqlite3.connect(run_dir / "journal.sqlite")
    bars = db.execute("SELECT COUNT(*) FROM bars").fetchone()[0]
    trades = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'trade'").fetchone()[0]
    orders = db.execute("SELECT COUNT(*), COUNT(DISTINCT payload) FROM events WHERE kind = 'order'").fetchone()
    assert orders[0] == orders[1], "an order was journaled twice"
    return bars, trades, orders[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("whole")
    p = _paper(d)
    assert p.returncode == 0, p.stderr[-3000:]
    return d


@pytest.mark.slow
def test_kill_and_resume_replay(uninterrupted, tmp_path):
    """Killed after a bar was decided and stepped but before its journal commit, mid-bar (ticks
    read, nothing journaled), after a bar's commit, after the source ack: each restart goes on
    from the journal."""
    d = tmp_path / "run"
    for k in ["decided:200", "read:9", "journal:700", "ack:1100"]:
        p = _paper(d, kill_at=k)
        assert p.returncode == -signal.SIGKILL, f"not killed at {k}: {p.stderr[-2000:]}"
        assert not (d / "trades.csv").exists()
    p = _paper(d)  # the same command, the same run folder: resumes
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resumed from the journal" in p.stdout + p.stderr
    assert (d / "trades.csv").read_text() == (uninterrupted / "trades.csv").read_text()
    assert _journal_facts(d) == _journal_facts(uninterrupted)
    for name in ("equity.parquet", "metrics.json", "report.html"):
        assert (d / name).is_file()


@pytest.mark.slow
def test_kill_and_resume_from_redis(redis_url, uninterrupted, tmp_path):
    """The same through a Redis stream: unacked ticks are re-delivered, journaled ones skipped."""
    from aio.config import build
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
    from aio.live.publish import publish_frame

    md = SyntheticSource(build(SyntheticDataConfig, {"start": "2024-03-04", "end": "2024-03-05"}, "data")).load()
    publish_frame(redis.Redis.from_url(redis_url), "k:ticks", md.frame, "ticks", meta={"symbol": "EURUSD",
                                                                                       "synthetic": "true"})
    extra = ["live.source=redis", f"live.redis_url={redis_url}", "live.stream=k:ticks"]
    d = tmp_path / "run"
    p = _paper(d, *extra, kill_at="journal:500")
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    p = _paper(d, *extra, kill_at="ack:900")
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    p = _paper(d, *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (d / "trades.csv").read_text() == (uninterrupted / "trades.csv").read_text()
    assert _journal_facts(d) == _journal_facts(uninterrupted)
    assert redis.Redis.from_url(redis_url).xpending("k:ticks", "aio-paper")["pending"] == 0


@pytest.mark.slow
def test_rerun_of_a_finished_run_changes_nothing(uninterrupted):
    before = (uninterrupted / "trades.csv").read_text()
    facts = _journal_facts(uninterrupted)
    p = _paper(uninterrupted)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (uninterrupted / "trades.csv").read_text() == before
    assert _journal_facts(uninterrupted) == facts


@pytest.mark.slow
def test_another_config_in_the_same_folder_is_refused(uninterrupted):
    p = _paper(uninterrupted, "strategy.params.fastLength=5")
    assert p.returncode != 0
    assert "written by another configuration" in p.stderr + p.stdout


@pytest.mark.slow
def test_paper_artifacts_equal_a_backtest_run(uninterrupted, tmp_path):
    """The same command as task=run: trades.csv byte for byte, equity.parquet and the metrics."""
    import json

    import polars as pl

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    d = tmp_path / "batch"
    args = [a for a in BASE if not a.startswith(("task=", "live."))]
    p = subprocess.run([sys.executable, "-m", "aio", "task=run", *args, f"hydra.run.dir={d}"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (d / "trades.csv").read_text() == (uninterrupted / "trades.csv").read_text()
    assert pl.read_parquet(d / "equity.parquet").equals(pl.read_parquet(uninterrupted / "equity.parquet"))
    mb = json.loads((d / "metrics.json").read_text())
    mp = json.loads((uninterrupted / "metrics.json").read_text())
    assert mb["backtest"] == mp["backtest"]
    assert mp["headline"]["sample"] == "paper" and mp["synthetic"] is True
    assert "SYNTHETIC" in (uninterrupted / "report.html").read_text()


@pytest.mark.slow
def test_publish_task_and_control_without_an_engine(redis_url, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIO_LIVE_SECRET": "s3cret-for-tests"}
    p = subprocess.run([sys.executable, "-m", "aio", "task=publish", "data=synthetic", "data.end=2024-03-04T02:00",
                        f"live.redis_url={redis_url}", "live.stream=pub:ticks", f"hydra.run.dir={tmp_path / 'pub'}"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = redis.Redis.from_url(redis_url)
    n = json.loads((tmp_path / "pub" / "metrics.json").read_text())["publish"]["records"]
    assert n > 1000 and r.xlen("pub:ticks") == n + 1
    assert r.hget("pub:ticks:meta", "synthetic") == b"true"
    p = subprocess.run([sys.executable, "-m", "aio", "task=control", "cmd=status", f"live.redis_url={redis_url}",
                        "live.reply_timeout_s=1", f"hydra.run.dir={tmp_path / 'ctl'}"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "no reply to status" in p.stderr + p.stdout
    # the command itself went out signed
    (sid, fields), = r.xrange("aio:live:commands")
    assert fields[b"cmd"] == b"status" and len(fields[b"sig"]) == 64
