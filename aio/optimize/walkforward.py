"""Walk-forward windows over bar indices (pure functions).

The OOS windows tile the last ``oos_fraction`` of the bars, one per fold, in time
order. Each fold's in-sample (IS) window ends ``gap_bars`` before its OOS window:
``anchored`` IS windows start at bar 0 and grow, ``rolling`` ones keep a fixed
length (``is_bars``, default everything before the first OOS window).
"""

from __future__ import annotations

from dataclasses import dataclass

from aio.errors import ConfigError


@dataclass(frozen=True)
class Window:
    start: int
    end: int  # exclusive

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Fold:
    index: int
    is_: Window
    oos: Window | None


def make_folds(
    n_bars: int,
    folds: int,
    scheme: str = "anchored",
    oos_fraction: float = 0.3,
    is_bars: int | None = None,
    gap_bars: int = 0,
    min_is_bars: int = 50,
) -> list[Fold]:
    """``folds=0``: one IS window over all bars and no OOS (no walk-forward)."""
    if folds == 0:
        return [Fold(0, Window(0, n_bars), None)]
    oos_len = int(n_bars * oos_fraction) // folds
    if oos_len < 1:
        raise ConfigError(
            f"optimize.walk_forward: {n_bars} bars give {folds} OOS windows of {oos_len} bars; "
            f"use fewer folds or a larger oos_fraction"
        )
    first_oos = n_bars - folds * oos_len
    is_len = is_bars if is_bars is not None else first_oos - gap_bars
    out = []
    for k in range(folds):
        o_start = first_oos + k * oos_len
        o_end = n_bars if k == folds - 1 else o_start + oos_len
        i_end = o_start - gap_bars
        i_start = 0 if scheme == "anchored" else max(0, i_end - is_len)
        if i_end - i_start < min_is_bars:
            raise ConfigError(
                f"optimize.walk_forward: fold {k} has only {max(i_end - i_start, 0)} in-sample bars "
                f"(need {min_is_bars}); lower oos_fraction/gap_bars or raise is_bars"
            )
        out.append(Fold(k, Window(i_start, i_end), Window(o_start, o_end)))
    return out


def blocks(w: Window, n: int) -> list[Window]:
    """``w`` cut into ``n`` consecutive blocks of (nearly) equal length."""
    n = max(1, min(n, len(w)))
    edges = [w.start + (len(w) * i) // n for i in range(n + 1)]
    return [Window(edges[i], edges[i + 1]) for i in range(n)]
