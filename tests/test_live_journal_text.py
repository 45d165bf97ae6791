"""The memoised decision text is exactly the journal text of the decision (bit-exact keys:
NaN, -0.0, brackets, sizes and sizer steps), so journals written before and after it agree."""

from __future__ import annotations

import numpy as np

from aio.backtest.broker import Decisions
from aio.live.broker import DecisionTexts, decision_payload
from aio.live.journal import canon


def test_memoised_decision_text_equals_the_journal_text():
    keys = ("stop_long", "limit_short", "stop_dist")
    texts = DecisionTexts(keys)
    rng = np.random.default_rng(1)
    cases = []
    for i in range(400):
        when = rng.random(3) < 0.3
        price = np.where(rng.random(3) < 0.5, np.nan, np.round(rng.uniform(1, 2, 3), 1))
        d = Decisions(when, price, size=float(rng.choice([np.nan, 1000.0, -0.0, 0.0])),
                      stop_long=float(rng.choice([np.nan, 1.1, -0.0])), limit_short=float(rng.choice([np.nan, 0.9])),
                      stop_dist=float(rng.choice([np.nan, 0.001])),
                      size_steps={"risk": float(rng.choice([np.nan, 500.0, 0.0]))} if i % 2 else {})
        cases.append(d)
    for d in cases + cases:  # the second pass is served from the memo
        assert canon(texts(d)) == canon(decision_payload(d, keys))
    assert len(texts.memo) < len(cases)  # repeated decisions share one text
    # -0.0 and 0.0 are different texts, and so different entries
    a = Decisions(np.zeros(2, dtype=bool), np.full(2, np.nan), size=0.0)
    b = Decisions(np.zeros(2, dtype=bool), np.full(2, np.nan), size=-0.0)
    assert canon(texts(a)) != canon(texts(b))


def test_memo_is_bounded():
    texts = DecisionTexts(("stop_long",))
    for i in range(DecisionTexts.LIMIT + 10):
        d = Decisions(np.zeros(1, dtype=bool), np.full(1, np.nan), stop_long=1.0 + i * 1e-6)
        assert canon(texts(d)) == canon(decision_payload(d, ("stop_long",)))
    assert len(texts.memo) <= DecisionTexts.LIMIT
