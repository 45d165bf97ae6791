"""The final holdout: the last ``discover.holdout_pct`` of the bars, seen once per candidate.

:func:`split_holdout` cuts the bars into a discovery window, an embargo gap and the
holdout. Proposers, tuners and gates get the discovery window only
(``split.discovery``); the gap is as long as the longest label horizon or indicator
lookback, so no label or tuned decision of the discovery window reaches into the holdout.

:class:`HoldoutGuard` runs an accepted candidate on the holdout exactly once: the claim is
written to the ledger file (``holdout`` table, one row per candidate id) before the
evaluation starts, so a second evaluation raises :class:`HoldoutReusedError` even from
another process or after a crash mid-evaluation (a started, unfinished evaluation counts:
the candidate has seen the holdout).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, TypeVar

from aio.discover.ledger import Ledger, _json
from aio.errors import AioError, ConfigError

T = TypeVar("T")


class HoldoutReusedError(AioError):
    """A candidate was already evaluated on the holdout."""


@dataclass(frozen=True)
class HoldoutSplit:
    """Bar index ranges ``[start, stop)`` of the discovery window, the gap and the holdout."""

    n_bars: int
    holdout_pct: float
    embargo_bars: int
    discovery_stop: int  # discovery window: [0, discovery_stop)
    holdout_start: int  # holdout: [holdout_start, n_bars); the gap is [discovery_stop, holdout_start)

    @property
    def discovery(self) -> slice:
        return slice(0, self.discovery_stop)

    @property
    def holdout(self) -> slice:
        return slice(self.holdout_start, self.n_bars)

    @property
    def holdout_bars(self) -> int:
        return self.n_bars - self.holdout_start

    def window(self, ts_init=None) -> dict[str, Any]:
        """The split as a record (with bar close times when ``ts_init`` is given)."""
        out: dict[str, Any] = asdict(self)
        if ts_init is not None and self.n_bars:
            out["discovery_last_ts_init"] = int(ts_init[self.discovery_stop - 1]) if self.discovery_stop else None
            out["holdout_first_ts_init"] = int(ts_init[self.holdout_start]) if self.holdout_bars else None
            out["holdout_last_ts_init"] = int(ts_init[self.n_bars - 1])
        return out


def split_holdout(n_bars: int, holdout_pct: float = 20.0, embargo_bars: int = 0, *,
                  min_discovery_bars: int = 1, min_holdout_bars: int = 1) -> HoldoutSplit:
    """Cut ``n_bars`` into discovery | embargo gap | holdout (the last ``holdout_pct``%).

    The holdout has ``ceil(n_bars * holdout_pct / 100)`` bars; the gap of
    ``embargo_bars`` comes out of the discovery window, which keeps the rest.
    """
    if not 0 < holdout_pct < 100:
        raise ConfigError(f"config key discover.holdout_pct={holdout_pct!r} must be in (0, 100) (default 20)")
    if embargo_bars < 0:
        raise ConfigError(f"embargo_bars={embargo_bars} must be >= 0 (the longest label horizon or indicator lookback)")
    hold = math.ceil(n_bars * holdout_pct / 100.0)
    start = n_bars - hold
    stop = start - int(embargo_bars)
    if hold < min_holdout_bars or stop < min_discovery_bars:
        raise ConfigError(
            f"{n_bars} bars cannot hold a {holdout_pct:g}% holdout ({hold} bars, need {min_holdout_bars}), an embargo "
            f"of {embargo_bars} bars and a discovery window of at least {min_discovery_bars} bars: load more data "
            f"(data.start/data.end) or lower discover.holdout_pct"
        )
    return HoldoutSplit(n_bars=n_bars, holdout_pct=float(holdout_pct), embargo_bars=int(embargo_bars),
                        discovery_stop=stop, holdout_start=start)


class HoldoutGuard:
    """Evaluates candidates on the holdout, each exactly once (claims persist in the ledger)."""

    def __init__(self, ledger: Ledger, split: HoldoutSplit) -> None:
        self.ledger = ledger
        self.split = split
        self._db = ledger._db

    def evaluate(self, candidate_id: str, fn: Callable[[slice], T], *, summary: Callable[[T], Any] | None = None) -> T:
        """Run ``fn(split.holdout)`` for ``candidate_id`` once; a second call raises.

        ``summary(result)`` is stored with the claim (default: ``result.metrics`` for an
        :class:`aio.backtest.evaluator.Evaluation`, else the result if JSON-able).
        """
        window = _json(self.split.window())
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO holdout (candidate_id, window, started) VALUES (?, ?, ?)",
                             (candidate_id, window, time.time()))
            self._db.execute("COMMIT")
        except sqlite3.IntegrityError:
            self._db.execute("ROLLBACK")
            prev = self._db.execute("SELECT started, finished FROM holdout WHERE candidate_id = ?",
                                    (candidate_id,)).fetchone()
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(prev[0]))
            state = "finished" if prev[1] is not None else "started and never finished"
            raise HoldoutReusedError(
                f"candidate {candidate_id} was already evaluated on the holdout ({state}, {when}); a holdout is "
                f"seen once per candidate, so its result is the one stored in {self.ledger.path}"
            ) from None
        result = fn(self.split.holdout)
        if summary is not None:
            stored = summary(result)
        else:  # an Evaluation keeps its metrics; plain values are stored as they are
            stored = getattr(result, "metrics", result)
        try:
            text = _json(stored)
        except TypeError:
            text = json.dumps({"repr": repr(stored)[:2000]})
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("UPDATE holdout SET finished = ?, result = ? WHERE candidate_id = ?",
                         (time.time(), text, candidate_id))
        self._db.execute("COMMIT")
        return result

    def seen(self, candidate_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM holdout WHERE candidate_id = ?", (candidate_id,)).fetchone() is not None

    def result(self, candidate_id: str) -> Any:
        row = self._db.execute("SELECT result FROM holdout WHERE candidate_id = ?", (candidate_id,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def evaluated(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT candidate_id FROM holdout ORDER BY started")]
