"""A discovery candidate and what the funnel learns about it (one leaderboard row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Candidate:
    proposer: str
    spec: dict[str, Any]  # StrategySpec mapping (the YAML form)
    meta: dict[str, Any] = field(default_factory=dict)  # proposer's own figures (fidelity, teacher...)
    # filled by the funnel
    id: str = ""
    text: str = ""  # canonical rule text
    structure: str = ""  # canonical text with parameter names: one "distinct rule"
    parsed: Any = None  # StrategySpec
    status: str = "proposed"  # proposed|invalid|duplicate|screened|tuned|rejected|accepted
    reason: str = ""
    screen: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # tuned (walk-forward) parameters
    oos: dict[str, Any] = field(default_factory=dict)  # stitched out-of-sample metrics, net of costs
    oos_returns: Any = None
    gates: dict[str, Any] = field(default_factory=dict)
    passed: dict[str, bool] = field(default_factory=dict)
    holdout: dict[str, Any] | None = None
    trials: int = 0

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def row(self) -> dict[str, Any]:
        """The leaderboard row (account currency; empty holdout when it never got there)."""
        h = self.holdout or {}
        return {
            "id": self.id, "proposer": self.proposer, "rule": self.text, "status": self.status,
            "reason": self.reason,
            "screen_sharpe": self.screen.get("sharpe"), "screen_trades": self.screen.get("trade_count"),
            "oos_net_profit": self.oos.get("net_profit"), "oos_sharpe": self.oos.get("sharpe"),
            "trades": self.oos.get("trade_count"),
            "dsr": self.gates.get("dsr"), "pbo": self.gates.get("pbo"), "spa_p": self.gates.get("spa_p"),
            "fidelity": self.meta.get("fidelity"),
            "holdout_net_profit": h.get("net_profit") if self.holdout is not None else None,
            "holdout_sharpe": h.get("sharpe") if self.holdout is not None else None,
            "holdout_trades": h.get("trade_count") if self.holdout is not None else None,
            "accepted": self.accepted,
        }
