"""The trial ledger: round trips, canonical rules, effective trials, and kills / concurrent
writers by fault injection (real processes, SIGKILL mid-write)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from aio.discover.gates import (
    aggregate,
    cluster_returns,
    deflated_sharpe_from_trials,
    deflated_sharpe_ratio,
    effective_trials,
    sharpe,
)
from aio.discover.ledger import Ledger, LedgerCorruptError, LedgerError, TrialRecord, canonical_rule
from aio.errors import ConfigError
from aio.strategy.evaluate import evaluate
from aio.strategy.expr import parse

REPO = Path(__file__).resolve().parent.parent


def _rec(led: Ledger, i: int, rule: str = "close > open", returns=None, **kw) -> int:
    return led.record(candidate_id=f"c{i}", rule=rule, params={"length": i}, proposer="grammar_search",
                      window={"start": 0, "stop": 100}, is_returns=returns, **kw)


def test_round_trip_of_rows_and_series(tmp_path):
    r = np.random.default_rng(0).normal(0, 1e-4, 5000)
    r[100:200] = 0.0
    with Ledger(tmp_path / "discover") as led:
        assert led.path == tmp_path / "discover" / "ledger.sqlite"
        rid = led.record(candidate_id="abc", kind="candidate", rule="crossover( rsi,30 )", params={"length": np.int64(14)},
                         proposer="distill", window={"start": 0, "stop": 5000}, is_returns=r, oos_returns=r[:100],
                         metrics={"sharpe": np.float64(1.5), "trades": 40, "dsr": float("nan")})
        row = led.rows()[0]
        assert row.id == rid and row.kind == "candidate" and row.rule == "crossover(rsi, 30)"
        assert row.params == {"length": 14} and row.metrics["trades"] == 40 and np.isnan(row.metrics["dsr"])
        assert row.is_len == 5000 and row.oos_len == 100
        assert np.array_equal(led.returns(rid, "is"), r) and np.array_equal(led.returns(rid, "oos"), r[:100])
    with Ledger(tmp_path / "discover" / "ledger.sqlite") as again:  # reopened: all still there
        assert again.n_trials == 1 and again.check() == {"rows": 1, "distinct_rules": 1, "integrity": "ok"}


def test_counts_and_distinct_rules_use_the_canonical_text(tmp_path):
    with Ledger(tmp_path) as led:
        _rec(led, 0, "close>open")
        _rec(led, 1, "close  >  open")
        _rec(led, 2, "(close > open)")
        _rec(led, 3, "close > open and rsi < 30")
        led.record_many([TrialRecord(f"t{i}", "rsi<30.0 and close>open", {"x": i}, "tuner", {"start": 0}) for i in range(5)])
        assert led.n_trials == 9
        # spelling does not make a new rule; a different order of terms does (no algebra here)
        assert led.n_distinct_rules == 3
        assert {r.rule for r in led.rows()} == {"close > open", "close > open and rsi < 30", "rsi < 30 and close > open"}


def test_canonical_rule_keeps_the_meaning():
    rng = np.random.default_rng(1)
    env = {k: rng.normal(0, 1, 300) for k in ("a", "b", "c", "d")}
    for text in ["a>b  and(c<1.0)", "(a+b)*c - -d > 0", "a - (b - c) > d", "not (a > b) or c > d and a < 0",
                 "crossover(a,b) or crossunder( c , d )", "(a + b)[2] > c[1]", "a / (b * c) > d / b * c"]:
        canon = canonical_rule(text)
        assert canonical_rule(canon) == canon  # one spelling
        x, y = evaluate(parse(text), env, 300), evaluate(parse(canon), env, 300)
        assert np.array_equal(np.asarray(x), np.asarray(y)), (text, canon)
    assert canonical_rule("entry long: crossover(x,y)\nclose:x<y") == "entry long: crossover(x, y); close: x < y"


def test_effective_trials_from_the_ledger(tmp_path):
    rng = np.random.default_rng(2)
    t = 60 * 200
    with Ledger(tmp_path) as led:
        for g, rule in enumerate(["crossover(rsi, lo)", "close > upper", "sma_f > sma_s"]):
            base = rng.normal(0, 1e-4, t)
            for k in range(8):  # one rule swept over 8 parameter sets: nearly the same returns
                led.record(candidate_id=f"{g}-{k}", rule=rule, params={"k": k}, proposer="grammar_search",
                           window={"start": 0}, is_returns=base + rng.normal(0, 2e-5, t))
        led.record(candidate_id="short", rule="close < open", params={}, proposer="x", window={},
                   is_returns=np.zeros(50))  # another window: not correlated, still a distinct rule
        eff = led.effective_trials(period=60)
        assert eff.n_trials == 24 and eff.n_eff == 4 and eff.estimate == 3  # floor: 4 distinct rules
        ids, m = led.return_matrix("is", period=60)
        assert len(ids) == 24 and m.shape == (200, 24)
        best = m[:, 0] * 0 + rng.normal(2e-4, 1e-3, 200)
        d = led.deflated_sharpe(np.repeat(best / 60, 60), period=60)
        ref = deflated_sharpe_from_trials(aggregate(np.repeat(best / 60, 60), 60), m, floor=4)
        assert d["dsr"] == pytest.approx(ref["dsr"]) and d["n_trials"] == 4 and d["ledger_trials"] == 25
        # the spread of the unskilled maximum comes from the three clusters, one Sharpe each
        eff = effective_trials(m)
        v = np.var(sharpe(cluster_returns(m, eff.labels)), ddof=1)
        assert d["var_sharpe"] == pytest.approx(v) and d["var_sharpe_from"] == "clusters"
        assert ref["dsr"] != pytest.approx(deflated_sharpe_ratio(aggregate(np.repeat(best / 60, 60), 60), sharpe(m), 4)["dsr"])
        assert effective_trials(m).n_eff == 3


def test_floor_is_the_number_of_distinct_rules(tmp_path):
    same = np.random.default_rng(3).normal(0, 1e-4, 600)
    with Ledger(tmp_path) as led:
        for i in range(5):  # five different rules that happen to trade identically
            _rec(led, i, f"close > open + {i}", returns=same)
        assert led.effective_trials(period=1).estimate == 1
        assert led.effective_trials(period=1).n_eff == 5


def test_a_damaged_series_is_an_error_naming_the_row(tmp_path):
    with Ledger(tmp_path) as led:
        rid = _rec(led, 0, returns=np.arange(1000.0))
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    blob = bytearray(db.execute("SELECT is_returns FROM trials").fetchone()[0])
    blob[len(blob) // 2] ^= 0xFF
    db.execute("UPDATE trials SET is_returns = ?", (bytes(blob),))
    db.commit()
    db.close()
    with Ledger(tmp_path) as led:
        with pytest.raises(LedgerCorruptError, match=f"row {rid}"):
            led.returns(rid)
        with pytest.raises(LedgerCorruptError):
            led.check()


def test_bad_input_and_foreign_files(tmp_path):
    (tmp_path / "x.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="cannot open the trial ledger"):
        Ledger(tmp_path / "x.sqlite")
    with Ledger(tmp_path / "ok") as led:
        with pytest.raises(ConfigError, match="kind"):
            led.record(candidate_id="a", rule="a > b", params={}, proposer="p", window={}, kind="guess")
        with pytest.raises(ConfigError, match="empty rule"):
            led.record(candidate_id="a", rule="  ", params={}, proposer="p", window={})
        assert led.n_trials == 0


# -- fault injection -------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from aio.discover.ledger import Ledger
    path, tag, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    led = Ledger(path)
    rng = np.random.default_rng(start + hash(tag) % 1000)
    for i in range(start, start + count):
        r = rng.normal(0, 1, 150_000)  # ~1.2 MB that barely compresses: writes take a while
        print(f"begin {i}", flush=True)
        led.record(candidate_id=f"{tag}-{i}", rule=f"close > sma_{i % 7}", params={"seq": i}, proposer=tag,
                   window={"start": 0}, is_returns=r, oos_returns=r[:1000], metrics={"seq": i, "sum": float(r.sum())})
        print(f"done {i}", flush=True)
""")


def _writer(path, tag, start, count):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(start), str(count)],
                            stdout=subprocess.PIPE, text=True, env=env)


def _verify(path) -> list:
    with Ledger(path) as led:
        assert led.check()["integrity"] == "ok"
        rows = led.rows()
        for row in rows:  # every row whole: its series matches the sum written with it
            assert led.returns(row.id).sum() == pytest.approx(row.metrics["sum"], abs=1e-6)
            assert np.array_equal(led.returns(row.id, "oos"), led.returns(row.id)[:1000])
        return rows


def test_kill_mid_write_leaves_no_partial_row(tmp_path):
    path = tmp_path / "ledger.sqlite"
    rng = np.random.default_rng(4)
    committed, mid_write = 0, 0
    for _ in range(4):
        p = _writer(path, "w", committed, 1000)
        begins = 0
        for line in p.stdout:
            if line.startswith("begin"):
                begins += 1
                if begins == 3:  # two rows done, the third being written
                    time.sleep(rng.uniform(0.0, 0.08))
                    break
        p.send_signal(signal.SIGKILL)
        out = p.communicate()[0]
        assert p.returncode == -signal.SIGKILL
        rows = _verify(path)
        seqs = [r.metrics["seq"] for r in rows]
        assert seqs == list(range(len(seqs)))  # no gap, no duplicate, no half row
        assert len(seqs) >= committed + 2
        if len(seqs) == committed + 2 and "done 2" not in out:
            mid_write += 1  # the kill landed while row 3 was being written
        committed = len(seqs)
    assert mid_write >= 1  # the injection did hit a write in progress


def test_concurrent_writers_all_land(tmp_path):
    path = tmp_path / "ledger.sqlite"
    procs = [_writer(path, f"p{k}", 0, 8) for k in range(3)]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    rows = _verify(path)
    assert len(rows) == 24
    assert {(r.proposer, r.metrics["seq"]) for r in rows} == {(f"p{k}", i) for k in range(3) for i in range(8)}
