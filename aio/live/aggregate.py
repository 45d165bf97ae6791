"""Ticks -> bars as ticks arrive, on the same grid and with the same arithmetic as aio.bars.

A bar with open ``t`` holds the ticks with ``t <= ts_event < t + tf``; it is closed when
a tick of a later bar arrives (or the stream ends), i.e. never before its ``ts_init``.
The bar's values are computed by the same numpy segment reductions as
:func:`aio.bars.ticks_to_bars` over the same ticks in the same order, so a live bar
equals the batch bar bit for bit (tested against ``ticks_to_bars``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from aio.bars import bar_open


@dataclass
class ClosedBar:
    ts_event: int
    ts_init: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    ticks: int
    spread_mean: float
    last_id: str  # source position of the bar's last record
    received_ns: int = 0  # arrival of the record that closed it (latency)

    def ohlc(self) -> tuple[float, float, float, float]:
        return self.open, self.high, self.low, self.close


_EMPTY_F = np.zeros(0)
_EMPTY_I = np.zeros(0, dtype=np.int64)


class TickAggregator:
    """Keeps the open bar's ticks; ``push`` returns the bars that a batch closed."""

    def __init__(self, tf_ns: int, side: str = "mid", anchor: str = "utc", spread_known: bool = True) -> None:
        self.tf, self.side, self.anchor, self.spread_known = int(tf_ns), side, anchor, spread_known
        self.p = _EMPTY_F
        self.v = _EMPTY_F
        self.sp = _EMPTY_F
        self.opens = _EMPTY_I
        self.ids = np.zeros(0, dtype=object)  # source positions of the open bar's ticks
        self.last_open: int | None = None
        self.closed_open = np.iinfo(np.int64).min  # open time of the last bar closed (journaled)
        self.late = 0  # ticks older than the open bar (dropped; a sorted batch would have placed them)
        self.dropped = 0  # ticks without a usable price (as ticks_to_bars drops them)

    def _columns(self, frame: pl.DataFrame) -> tuple[np.ndarray, ...]:
        bid = frame.get_column("bid").to_numpy()
        ask = frame.get_column("ask").to_numpy()
        if self.side == "bid":
            p, v = bid, frame.get_column("bid_volume").to_numpy()
        elif self.side == "ask":
            p, v = ask, frame.get_column("ask_volume").to_numpy()
        else:
            p = (bid + ask) / 2.0
            v = frame.get_column("bid_volume").to_numpy() + frame.get_column("ask_volume").to_numpy()
        return (np.asarray(p, dtype=np.float64), np.asarray(v, dtype=np.float64),
                np.asarray(ask - bid, dtype=np.float64))

    def push(self, frame: pl.DataFrame, ids: list[str], received_ns: int = 0, end: bool = False) -> list[ClosedBar]:
        if frame.height:
            p, v, sp = self._columns(frame)
            ts = frame.get_column("ts_event").to_numpy().astype(np.int64)
            ok = np.isfinite(p) & (p > 0)
            if not ok.all():
                self.dropped += int((~ok).sum())
            opens = bar_open(ts, self.tf, self.anchor)
            floor = self.last_open if self.last_open is not None else np.iinfo(np.int64).min
            # running max: a tick older than a bar already opened cannot join a closed bar
            run_max = np.maximum.accumulate(np.r_[floor, opens])[1:]
            late = (opens < run_max) | (opens <= self.closed_open)
            if late.any():
                self.late += int(late.sum())
            keep = ok & ~late
            idx = np.flatnonzero(keep)
            self.p = np.concatenate([self.p, p[idx]])
            self.v = np.concatenate([self.v, v[idx]])
            self.sp = np.concatenate([self.sp, sp[idx]])
            self.opens = np.concatenate([self.opens, opens[idx]])
            arr = ids if isinstance(ids, np.ndarray) else np.asarray(ids, dtype=object)
            self.ids = arr[idx] if len(self.ids) == 0 else np.concatenate([self.ids, arr[idx]])
            if len(self.opens):
                self.last_open = int(self.opens[-1])
        return self._emit(received_ns, end)

    def _emit(self, received_ns: int, end: bool) -> list[ClosedBar]:
        n = len(self.opens)
        if n == 0:
            return []
        o = self.opens
        starts = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
        nclosed = len(starts) if end else len(starts) - 1
        if nclosed <= 0:
            return []
        cut = int(starts[nclosed]) if nclosed < len(starts) else n
        st = starts[:nclosed]
        ends = np.r_[st[1:], cut].astype(np.int64)
        p, v, sp = self.p[:cut], self.v[:cut], self.sp[:cut]
        counts = ends - st
        # the same reductions as aio.bars.ticks_to_bars, over the same values in the same order
        high = np.maximum.reduceat(p, st)
        low = np.minimum.reduceat(p, st)
        vol = np.add.reduceat(v, st)
        spread = np.add.reduceat(sp, st) / counts if self.spread_known else np.full(nclosed, np.nan)
        # whole columns to Python numbers at once (tolist: the same values as float()/int() each)
        t0s = o[st].tolist()
        tf = self.tf
        out = [ClosedBar(t0, t0 + tf, op, hi, lo, cl, vo, n_, sm, str(last), received_ns)
               for t0, op, hi, lo, cl, vo, n_, sm, last in zip(
                   t0s, p[st].tolist(), high.tolist(), low.tolist(), p[ends - 1].tolist(), vol.tolist(),
                   counts.tolist(), spread.tolist(), self.ids[ends - 1].tolist())]
        self.closed_open = max(self.closed_open, out[-1].ts_event)
        self.p, self.v, self.sp, self.opens = self.p[cut:], self.v[cut:], self.sp[cut:], self.opens[cut:]
        self.ids = self.ids[cut:]
        return out

    def close_due(self, now_ns: int, grace_ns: int = 0, received_ns: int = 0) -> list[ClosedBar]:
        """Real-time feeds: close the open bar once the clock is ``grace_ns`` past its ``ts_init``
        without a later tick. Ticks of it arriving afterwards are dropped (counted as late)."""
        if len(self.opens) and int(self.opens[-1]) + self.tf + grace_ns <= now_ns:
            return self._emit(received_ns, True)
        return []

    def open_bar_ids(self) -> list[str]:
        return list(self.ids)


class BarPassthrough:
    """Bars that arrive finished (a bar file replayed, a bar stream): each closes on arrival."""

    def __init__(self) -> None:
        self.last_open: int | None = None
        self.late = 0
        self.dropped = 0

    def push(self, frame: pl.DataFrame, ids: list[str], received_ns: int = 0, end: bool = False) -> list[ClosedBar]:
        out = []
        if not frame.height:
            return out
        cols = {c: frame.get_column(c).to_list() for c in ("ts_event", "ts_init", "open", "high", "low", "close",
                                                          "volume", "ticks", "spread_mean")}
        for i in range(frame.height):
            t0 = int(cols["ts_event"][i])
            if self.last_open is not None and t0 <= self.last_open:
                self.late += 1
                continue
            self.last_open = t0
            sm = cols["spread_mean"][i]
            out.append(ClosedBar(t0, int(cols["ts_init"][i]), float(cols["open"][i]), float(cols["high"][i]),
                                 float(cols["low"][i]), float(cols["close"][i]), float(cols["volume"][i] or 0.0),
                                 int(cols["ticks"][i] or 0), float("nan") if sm is None else float(sm), str(ids[i]),
                                 received_ns))
        return out
