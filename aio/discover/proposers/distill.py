"""Distil the model into rules Pine can run.

The teacher is the model's walk-forward out-of-sample opinion (``model.p_up`` minus
``model.p_down``, which exist only at bars the model predicted without having seen them).
On the proposal window, bars where that opinion is in its top (bottom) ``teacher_share``
are "long" ("short"), the rest "none". Shallow decision trees (scikit-learn) learn the
teacher from grammar features known at the bar's close: level-like indicator values,
the close's distance to price-like series, and lagged changes. Each leaf that predicts
long or short is a conjunction of thresholds: one entry rule, i.e. a strategy (with each
configured bracket). Its fidelity is the share of the bars where the rule fires, later
than the proposal window (still before the holdout), on which the teacher agrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aio.config import param
from aio.discover.candidate import Candidate
from aio.errors import ConfigError


@dataclass
class DistillConfig:
    max_depth: list[int] = field(default_factory=lambda: [2, 3])
    min_leaf_share: float = param(0.02, gt=0, lt=0.5, help="a leaf covers at least this share of the teacher's bars")
    teacher_share: float = param(0.3, gt=0, lt=0.5, help="top/bottom share of p_up - p_down that counts as a call")
    feature_lengths: list[int] = field(default_factory=lambda: [5, 14, 30])
    lags: list[int] = field(default_factory=lambda: [1, 5])
    features_per_tree: float = param(0.5, gt=0, le=1, help="random share of the features each tree sees")
    brackets: list[list[float]] = field(default_factory=lambda: [[1.0, 1.5], [2.0, 3.0], [1.5, 4.0]])  # ATR stop, take
    min_teacher_bars: int = param(200, ge=20, help="fewer predicted bars on the proposal window: no distillation")


@dataclass(frozen=True)
class _Feat:
    kind: str  # level | dist | lag
    term: Any  # grammar Term
    lag: int = 0


class Distill:
    Config = DistillConfig
    name = "distill"

    def __init__(self, cfg: DistillConfig | None = None) -> None:
        self.cfg = cfg or DistillConfig()

    # -- features ------------------------------------------------------------------------
    def features(self, g: Any, arrays_env: dict[str, np.ndarray]) -> tuple[list[_Feat], np.ndarray]:
        from aio.discover.grammar import Term

        feats: list[_Feat] = []
        cols: list[np.ndarray] = []
        close = arrays_env["close"]
        for b in g.blocks:
            for L in (self.cfg.feature_lengths if b.length_key else [None]):
                t = Term(b, L)
                x = _series(g, t, arrays_env)
                if b.scale == "level":
                    feats.append(_Feat("level", t))
                    cols.append(x)
                else:
                    feats.append(_Feat("dist", t))
                    cols.append(close - x)
                for k in self.cfg.lags:
                    lagged = np.concatenate([np.full(k, np.nan), x[:-k]])
                    feats.append(_Feat("lag", t, k))
                    cols.append(x - lagged)
        return feats, np.column_stack(cols)

    # -- proposing -----------------------------------------------------------------------
    def propose(self, ctx: Any, budget: int) -> list[Candidate]:
        from sklearn.tree import DecisionTreeClassifier

        p_up = ctx.predictions.get("model.p_up")
        p_down = ctx.predictions.get("model.p_down")
        if p_up is None or p_down is None:
            raise ConfigError("discover.proposers has distill, which needs a model's model.p_up/model.p_down "
                              "(choose model=chartnet or knn_analogs, or drop distill from discover.proposers)")
        g = ctx.grammar
        env = ctx.evaluator_env()
        feats, X = self.features(g, env)
        opinion = np.asarray(p_up, dtype=np.float64) - np.asarray(p_down, dtype=np.float64)
        n = ctx.proposal_end
        ok = np.isfinite(opinion) & np.all(np.isfinite(X), axis=1)
        fit_rows = np.flatnonzero(ok[:n])
        test_rows = np.flatnonzero(ok[n:ctx.discovery_end]) + n
        if len(fit_rows) < self.cfg.min_teacher_bars:
            ctx.notes.append(f"distill: only {len(fit_rows)} predicted bars on the proposal window "
                             f"(< {self.cfg.min_teacher_bars}); no rules distilled")
            return []
        hi, lo = np.quantile(opinion[fit_rows], [1 - self.cfg.teacher_share, self.cfg.teacher_share])
        teacher = np.where(opinion >= hi, 1, np.where(opinion <= lo, -1, 0))
        out: list[Candidate] = []
        seen: set[tuple] = set()
        rng = ctx.rng
        n_feat = max(2, int(len(feats) * self.cfg.features_per_tree))
        attempts = 0
        while len(out) < budget and attempts < max(20, budget):
            attempts += 1
            depth = int(rng.choice(self.cfg.max_depth))
            cols = np.sort(rng.choice(len(feats), size=min(n_feat, len(feats)), replace=False))
            tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=max(5, int(self.cfg.min_leaf_share * len(fit_rows))),
                                          class_weight="balanced", random_state=int(rng.integers(1 << 30)))
            tree.fit(X[np.ix_(fit_rows, cols)], teacher[fit_rows])
            for path, direction in _leaf_paths(tree):
                if direction == 0:
                    continue
                conds = tuple(sorted((int(cols[f]), op, float(f"{thr:.6g}")) for f, op, thr in path))
                conds = _simplify(conds)[: g.cfg.max_entry_conditions]
                key = (conds, direction)
                if key in seen:
                    continue
                seen.add(key)
                fires = np.ones(len(X), dtype=bool)
                for f, op, thr in conds:
                    fires &= (X[:, f] <= thr) if op == "le" else (X[:, f] > thr)
                on_test = test_rows[fires[test_rows]]
                fid = float(np.mean(teacher[on_test] == direction)) if len(on_test) else None
                base = float(np.mean(teacher[test_rows] == direction)) if len(test_rows) else None
                for stop, take in self.cfg.brackets:
                    spec = _to_spec(g, feats, conds, direction, stop, take, f"ds{len(out)}")
                    out.append(Candidate("distill", spec, {
                        "fidelity": fid, "fidelity_base_rate": base, "fidelity_bars": int(len(on_test)),
                        "teacher_model_id": ctx.model_id, "tree_depth": depth}))
                    if len(out) >= budget:
                        break
                if len(out) >= budget:
                    break
        return out


def _series(g: Any, t: Any, env: dict[str, np.ndarray]) -> np.ndarray:
    from aio.indicators import compute_indicator, get_indicator

    if t.block.fn is None:
        return env[t.block.field]
    d = get_indicator(t.block.fn)
    p = {t.block.length_key: t.length} if t.block.length_key and t.length else {}
    out = compute_indicator(t.block.fn, {k: env[k] for k in d.inputs}, p)
    return out[t.block.output or d.outputs[0]]


def _leaf_paths(tree: Any) -> list[tuple[list[tuple[int, str, float]], int]]:
    t = tree.tree_
    classes = tree.classes_
    out = []

    def walk(node: int, path: list) -> None:
        if t.children_left[node] == -1:
            out.append((path, int(classes[int(np.argmax(t.value[node][0]))])))
            return
        f, thr = int(t.feature[node]), float(t.threshold[node])
        walk(t.children_left[node], path + [(f, "le", thr)])
        walk(t.children_right[node], path + [(f, "gt", thr)])

    walk(0, [])
    return out


def _simplify(conds: tuple) -> tuple:
    """Keep the tightest threshold per (feature, side)."""
    best: dict[tuple[int, str], float] = {}
    for f, op, thr in conds:
        k = (f, op)
        best[k] = min(best.get(k, thr), thr) if op == "le" else max(best.get(k, thr), thr)
    return tuple(sorted((f, op, thr) for (f, op), thr in best.items()))


def _to_spec(g: Any, feats: list[_Feat], conds: tuple, direction: int, stop: float, take: float, name: str) -> dict:
    from aio.discover.grammar import _SpecBuilder

    b = _SpecBuilder(g)
    parts = []
    for f, op, thr in conds:
        ft = feats[f]
        x = b.series(ft.term)
        lhs = {"level": x, "dist": f"close - {x}", "lag": f"{x} - {x}[{ft.lag}]"}[ft.kind]
        span = max(abs(thr), 1e-12)
        lvl = b.param(b._fresh(f"{x}_{ft.kind}"), thr, {"type": "float", "low": float(f"{thr - span:.6g}"),
                                                        "high": float(f"{thr + span:.6g}")})
        parts.append(f"{lhs} {'<=' if op == 'le' else '>'} {lvl}")
    c = g.cfg
    when = b.atr_guard(" and ".join(parts))
    b.param("stop", float(stop), {"type": "float", "low": c.stop_atr[0], "high": c.stop_atr[1]})
    b.param("take", float(take), {"type": "float", "low": c.take_atr[0], "high": c.take_atr[1]})
    return {"name": name, "title": name, "params": b.params, "space": b.space, "indicators": b.indicators,
            "rules": [{"id": "Entry", "when": when, "action": "entry",
                       "direction": "long" if direction > 0 else "short"}],
            "exit": {"stop_atr": "stop", "take_atr": "take", "atr_length": c.atr_length}}
