"""The final holdout: the split with its embargo, and exactly one evaluation per candidate
(across guard objects, processes and crashes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from aio.discover.holdout import HoldoutGuard, HoldoutReusedError, split_holdout
from aio.discover.ledger import Ledger
from aio.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_split_takes_the_last_pct_and_an_embargo_before_it():
    s = split_holdout(1000, 20, embargo_bars=30)
    assert (s.discovery, s.holdout) == (slice(0, 770), slice(800, 1000))
    assert s.holdout_bars == 200 and s.holdout_start - s.discovery_stop == 30
    # ceil: the holdout never gets less than the percentage
    assert split_holdout(1001, 20).holdout_bars == 201
    # a label of horizon h at any discovery bar ends before the holdout starts
    for n, pct, h in [(14459, 20, 20), (500, 35, 7), (101, 1, 0)]:
        s = split_holdout(n, pct, embargo_bars=h)
        last_label_end = (s.discovery_stop - 1) + h
        assert last_label_end < s.holdout_start
        assert s.discovery_stop + h == s.holdout_start


def test_split_errors_name_the_fix():
    with pytest.raises(ConfigError, match="discover.holdout_pct"):
        split_holdout(1000, 0)
    with pytest.raises(ConfigError, match="discover.holdout_pct"):
        split_holdout(1000, 100)
    with pytest.raises(ConfigError, match="load more data"):
        split_holdout(100, 20, embargo_bars=90)
    with pytest.raises(ConfigError, match="embargo"):
        split_holdout(100, 20, embargo_bars=-1)


def test_window_record_names_the_times():
    ts = np.arange(100, dtype=np.int64) * 60
    w = split_holdout(100, 20, 5).window(ts)
    assert w["discovery_last_ts_init"] == 74 * 60 and w["holdout_first_ts_init"] == 80 * 60
    assert w["holdout_last_ts_init"] == 99 * 60


def test_a_candidate_sees_the_holdout_once(tmp_path):
    split = split_holdout(1000, 20, 10)
    calls = []

    def run(sl: slice) -> dict:
        calls.append(sl)
        return {"net_profit": 12.5, "trades": 31}

    with Ledger(tmp_path) as led:
        guard = HoldoutGuard(led, split)
        assert guard.evaluate("cand-1", run) == {"net_profit": 12.5, "trades": 31}
        assert calls == [slice(800, 1000)]
        with pytest.raises(HoldoutReusedError, match="cand-1 was already evaluated on the holdout \\(finished"):
            guard.evaluate("cand-1", run)
        assert len(calls) == 1
        guard.evaluate("cand-2", run)  # another candidate has its own one look
        assert guard.evaluated() == ["cand-1", "cand-2"] and guard.result("cand-1")["trades"] == 31
    with Ledger(tmp_path) as again:  # a new guard (a restarted run) remembers
        g2 = HoldoutGuard(again, split)
        assert g2.seen("cand-1")
        with pytest.raises(HoldoutReusedError):
            g2.evaluate("cand-1", run)
    assert len(calls) == 2


def test_a_crashed_evaluation_still_counts_as_seen(tmp_path):
    split = split_holdout(1000, 20)

    def boom(sl: slice):
        raise RuntimeError("broker failed half way")

    with Ledger(tmp_path) as led:
        guard = HoldoutGuard(led, split)
        with pytest.raises(RuntimeError):
            guard.evaluate("c", boom)
        with pytest.raises(HoldoutReusedError, match="started and never finished"):
            guard.evaluate("c", lambda sl: 1)


RACER = textwrap.dedent("""
    import sys
    from aio.discover.holdout import HoldoutGuard, HoldoutReusedError, split_holdout
    from aio.discover.ledger import Ledger
    path, marker = sys.argv[1], sys.argv[2]
    guard = HoldoutGuard(Ledger(path), split_holdout(1000, 20))
    def run(sl):
        with open(marker, "a") as f:
            f.write("ran\\n")
        return 1
    try:
        guard.evaluate("same", run)
    except HoldoutReusedError:
        sys.exit(3)
""")


def test_racing_processes_evaluate_a_candidate_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    marker = tmp_path / "ran.txt"
    Ledger(tmp_path).close()  # the file exists before the race
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path / "ledger.sqlite"), str(marker)], env=env)
             for _ in range(4)]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 3, 3, 3]
    assert marker.read_text() == "ran\n"
