"""The funnel on ground truth: planted edges are found (entries on the planted events,
positive holdout after costs) and null data yields nothing. Slow: each run proposes,
screens, tunes walk-forward and gates ~800 candidates on 8 days of synthetic M1."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _discover import PLANT_CCI_LONG, PLANT_STOCH_SHORT, discover, event_bars, overlap  # noqa: E402

pytestmark = pytest.mark.slow

END = "2024-03-12"  # 8 calendar days, 6 trading days of M1


def _base_rate(events: np.ndarray, n: int, horizon: int) -> float:
    cover = np.zeros(n, dtype=bool)
    for e in events:
        cover[e:e + horizon] = True
    return float(cover.mean())


@pytest.mark.parametrize("plant,seed", [(PLANT_CCI_LONG, 42), (PLANT_STOCH_SHORT, 7)], ids=["cci_long", "stoch_short"])
def test_discovery_finds_the_planted_edge(plant, seed, tmp_path):
    d = discover(plant, tmp_path, seed=seed, end=END, budget=800)
    res = d.result
    events = event_bars(d.market, d.bars)
    base = _base_rate(events, d.bars.frame.height, plant["horizon_bars"])
    found = []
    for c in res.accepted:
        assert c.holdout is not None and c.gates["dsr"] >= 0.95 and c.gates["pbo"] <= 0.2
        assert c.gates["spa_p"] <= 0.05 and c.oos["trade_count"] >= 30
        share = overlap(c.holdout["entries"], events, plant["horizon_bars"])
        if c.holdout["net_profit"] > 0 and share > base + 0.15:  # well above chance
            found.append((c.text, c.holdout["net_profit"], share))
    assert found, (f"no accepted strategy trades the plant profitably on the holdout (base rate {base:.2f}); "
                   f"accepted: {[(c.text, c.holdout) for c in res.accepted]}; counts {res.counts}")
    # the funnel's bookkeeping: every screen and trial is in the ledger, the holdout seen once each
    assert res.ledger["trials"] >= res.counts["screened"]
    assert res.ledger["effective_trials"]["n_eff"] >= res.ledger["distinct_rules"] > 0
    from aio.discover.holdout import HoldoutGuard, HoldoutReusedError
    from aio.discover.ledger import Ledger

    guard = HoldoutGuard(Ledger(tmp_path), res.windows.split)
    with pytest.raises(HoldoutReusedError):
        guard.evaluate(res.accepted[0].id, lambda sl: None)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_null_data_accepts_nothing(seed, tmp_path):
    d = discover(None, tmp_path, seed=seed, end=END, budget=800)
    assert d.result.counts["accepted"] == 0, [(c.text, c.gates) for c in d.result.accepted]
    assert d.result.counts["tested"] > 0  # the gates did judge candidates
