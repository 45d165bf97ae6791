"""The control: evolutionary search over the grammar, blind to any model.

The first part of the budget is every one-condition rule of the grammar (default
lengths, tail levels, both directions; the tuner moves lengths and levels later), then
random genomes; the rest is bred from them (tournament selection,
mutation, and-crossover of entry conditions). Fitness is the proposal-window Sharpe,
the same number the funnel's screen records, so every genome evaluated here is a trial
in the ledger. If the model-derived rules do not beat these, discovery says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aio.config import param
from aio.discover.candidate import Candidate


@dataclass
class GrammarSearchConfig:
    random_share: float = param(0.75, gt=0, le=1, help="share of the budget spent before breeding")
    singles: bool = param(True, help="start from every one-condition rule (then random genomes)")
    tournament: int = param(4, ge=2)
    crossover: float = param(0.3, ge=0, le=1, help="probability a child is a crossover")


class GrammarSearch:
    Config = GrammarSearchConfig
    name = "grammar_search"

    def __init__(self, cfg: GrammarSearchConfig | None = None) -> None:
        self.cfg = cfg or GrammarSearchConfig()

    def propose(self, ctx: Any, budget: int) -> list[Candidate]:
        from aio.discover.grammar import fast_spec

        g, rng = ctx.grammar, ctx.rng
        pop: list[tuple[float, Any]] = []
        out: list[Candidate] = []
        seen: set[Any] = set()

        def add(gen: Any) -> None:
            if gen in seen:
                return
            seen.add(gen)
            spec = g.to_spec(gen, name=f"gs{len(out)}")
            parsed = None
            try:
                parsed = fast_spec(spec)
                fit = ctx.fitness(parsed)
            except Exception:  # an invalid genome is the funnel's to count
                fit = -np.inf
            out.append(Candidate("grammar_search", spec, {"fitness": fit}, parsed=parsed))
            pop.append((fit, gen))

        n_random = max(1, int(budget * self.cfg.random_share))
        tries = 0
        if self.cfg.singles:
            singles = g.single_rules()
            for i in rng.permutation(len(singles))[:n_random]:
                add(singles[i])
        while len(out) < n_random and tries < 5 * budget:
            add(g.genome(rng))
            tries += 1
        while len(out) < budget and tries < 10 * budget:
            tries += 1
            good = [p for p in pop if np.isfinite(p[0])] or pop
            parent = self._pick(good, rng)
            if rng.random() < self.cfg.crossover:
                child = g.cross(parent, self._pick(good, rng), rng)
            else:
                child = g.mutate(parent, rng)
            add(child)
        return out

    def _pick(self, pop: list[tuple[float, Any]], rng: np.random.Generator) -> Any:
        idx = rng.choice(len(pop), size=min(self.cfg.tournament, len(pop)), replace=False)
        return max((pop[i] for i in idx), key=lambda p: p[0])[1]
