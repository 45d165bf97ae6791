"""Proposers (registry kind ``proposer``): each turns what it knows into candidates.

A proposer is a class with ``Config`` (its typed options, ``discover.<name>.*``) and
``propose(ctx, budget) -> list[Candidate]``. It sees only the proposal window's bars
(``ctx``), never the walk-forward OOS bars the gates judge nor the holdout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ProposeContext:
    grammar: Any  # aio.discover.grammar.Grammar built on the proposal window
    evaluator: Any  # over the discovery bars; proposers may only run it with end <= proposal_end
    proposal_end: int
    discovery_end: int
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # model.* over the discovery bars
    model_id: str | None = None
    library: Any = None  # aio.store.PatternLibrary or None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    min_trades: int = 10
    env: dict[str, np.ndarray] = field(default_factory=dict)  # price series of the discovery bars
    notes: list[str] = field(default_factory=list)  # what a proposer wants the report to say
    model_cfg: dict[str, Any] | None = None  # the run's model section (the vlm proposer loads that model)
    symbol: str = ""
    timeframe: str = ""

    def evaluator_env(self) -> dict[str, np.ndarray]:
        return self.env

    def fitness(self, spec: Any) -> float:
        """In-sample Sharpe on the proposal window (what the funnel's screen measures)."""
        e = self.evaluator.run(spec, None, start=0, end=self.proposal_end, metrics=["sharpe", "trade_count"])
        if (e.metrics.get("trade_count") or 0) < self.min_trades:
            return -np.inf
        s = e.metrics.get("sharpe")
        return float(s) if s is not None and np.isfinite(s) else -np.inf


DESCRIPTIONS = {
    "distill": "shallow trees fitted to the model's out-of-sample probabilities (discovery)",
    "grammar_search": "evolutionary search over the grammar, blind to any model (the control)",
    "library": "the strategy library and the shipped strategies, re-tested",
    "vlm": "a vision-language model writes rules under grammar-constrained decoding",
}


def register(registry) -> None:
    """What aio.builtin declares for this package (kind ``proposer``)."""
    from aio.discover.proposers.distill import Distill
    from aio.discover.proposers.grammar_search import GrammarSearch
    from aio.discover.proposers.library import LibraryProposer
    from aio.discover.proposers.vlm import VLMProposer

    for name, cls in (("distill", Distill), ("grammar_search", GrammarSearch), ("library", LibraryProposer),
                      ("vlm", VLMProposer)):
        registry.add("proposer", name, cls, description=DESCRIPTIONS[name])


__all__ = ["ProposeContext", "register"]
