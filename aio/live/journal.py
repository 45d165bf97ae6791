"""The paper run's journal: SQLite (WAL) in the run folder.

Per closed bar ``t`` the engine applies the control commands due at this close, asks
the rules for the decision and steps the broker (all in memory: a paper broker sends
nothing out), then writes **one transaction**: the bar (with the source position of its
last record), its events in order (commands applied, the decision, then the broker's
orders placed, trades closed, the position), the bar marked done. Only then are the
source acknowledged (Redis XACK) and control replies sent.

A kill before the commit leaves no trace of the bar: the restart rebuilds it from the
re-delivered records and decides it again. A kill after the commit and before the ack
makes the source re-deliver records the journal already holds; they are skipped by
position. A restart reads the journal, re-runs every journaled bar through the same rules
and broker and checks that each recomputed event equals the journaled one (an event is
keyed by ``(t, seq)``: written once, never twice), then reopens the source after the last
journaled position.

The journal is also the live trade log (``events`` with ``kind='trade'``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from aio.errors import AioError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (
    t INTEGER PRIMARY KEY, ts_event INTEGER NOT NULL, ts_init INTEGER NOT NULL,
    open REAL, high REAL, low REAL, close REAL, volume REAL, ticks INTEGER, spread_mean REAL,
    last_id TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS events (
    t INTEGER NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (t, seq));
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, received_t INTEGER, status TEXT NOT NULL, payload TEXT NOT NULL, reason TEXT);
"""


class JournalError(AioError):
    """The journal disagrees with a re-run of its own bars (a broken exactly-once invariant)."""


@dataclass
class JournalBar:
    t: int
    values: tuple  # ts_event, ts_init, open, high, low, close, volume, ticks, spread_mean
    last_id: str
    done: bool


def _float(v: Any) -> float:
    return float("nan") if v is None else float(v)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


class Canonical:
    """A payload already in its journal text (``canon``'s output), e.g. a memoised decision."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def canon(payload: Any) -> str:
    """One text per payload: NaN as null, keys sorted, floats by repr (bit-exact comparison)."""
    if type(payload) is Canonical:
        return payload.text
    try:  # most payloads are plain and finite: one encoder pass
        text = _ENCODER.encode(payload)
    except TypeError:  # numpy scalars and the like
        text = "NaN"
    if "NaN" not in text and "Infinity" not in text:
        return text
    return json.dumps(_clean(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _clean(o: Any) -> Any:
    if isinstance(o, float):
        return None if o != o else (repr(o) if o in (float("inf"), float("-inf")) else o)
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if hasattr(o, "item"):  # numpy scalars
        return _clean(o.item())
    return o


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        # WAL + synchronous=NORMAL: a committed transaction survives the process being
        # killed (kill -9); FULL would also survive power loss at one fsync per commit.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={os.environ.get('AIO_JOURNAL_SYNC', 'NORMAL')}")
        self.db.executescript(SCHEMA)
        self._kill_at = _kill_trigger()
        self._writes = 0

    # -- meta --------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, values: dict[str, Any]) -> None:
        with self._tx():
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in values.items()])

    # -- reads -------------------------------------------------------------------------
    def bars(self) -> list[JournalBar]:
        rows = self.db.execute(
            "SELECT t, ts_event, ts_init, open, high, low, close, volume, ticks, spread_mean, last_id, done "
            "FROM bars ORDER BY t").fetchall()
        out = []
        for i, r in enumerate(rows):
            if r[0] != i:
                raise JournalError(f"journal {self.path}: bar {i} is missing (next is {r[0]}); the journal is damaged")
            vals = (r[1], r[2], r[3], r[4], r[5], r[6], _float(r[7]), r[8], _float(r[9]))
            out.append(JournalBar(r[0], vals, r[10], bool(r[11])))
        return out

    def events(self, t: int | None = None, kind: str | None = None) -> list[tuple[int, int, str, str]]:
        q = "SELECT t, seq, kind, payload FROM events"
        cond, args = [], []
        if t is not None:
            cond.append("t = ?")
            args.append(t)
        if kind is not None:
            cond.append("kind = ?")
            args.append(kind)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        return self.db.execute(q + " ORDER BY t, seq", args).fetchall()

    # -- writes ------------------------------------------------------------------------
    def _tx(self):
        return _Tx(self.db)

    def write_bars(self, bars: Iterable[tuple[int, tuple, str, Iterable[tuple[int, str, Any]]]]) -> None:
        """Bars ``(t, values, last_id, events)`` and all their events, in one transaction."""
        bar_rows, ev_rows = [], []
        for t, values, last_id, events in bars:
            bar_rows.append((t, *[None if v != v else v for v in values], last_id))  # NaN as NULL
            ev_rows += [(t, seq, kind, canon(payload)) for seq, kind, payload in events]
        with self._tx():
            self.db.executemany(
                "INSERT INTO bars (t, ts_event, ts_init, open, high, low, close, volume, ticks, spread_mean, "
                "last_id, done) VALUES (?,?,?,?,?,?,?,?,?,?,?,1)", bar_rows)
            self.db.executemany("INSERT INTO events (t, seq, kind, payload) VALUES (?,?,?,?)", ev_rows)
        if bar_rows:
            self._maybe_die("journal", bar_rows[-1][0])

    def all_events(self) -> dict[int, dict[int, tuple[str, str]]]:
        """Every journaled event, by bar and sequence number (recovery reads them once)."""
        out: dict[int, dict[int, tuple[str, str]]] = {}
        for t, seq, kind, payload in self.events():
            out.setdefault(t, {})[seq] = (kind, payload)
        return out

    def check(self, t: int, have: dict[int, tuple[str, str]], events: list[tuple[int, str, Any]]) -> None:
        """Recovery: the events recomputed for journaled bar t must be the journal's, one for one."""
        for seq, kind, payload in events:
            text = canon(payload)
            if have.get(seq) != (kind, text):
                got = "nothing" if seq not in have else f"{have[seq][0]} {have[seq][1]}"
                raise JournalError(
                    f"journal {self.path}: bar {t} event {seq} is {got} but the re-run gives {kind} {text}; the "
                    "strategy, data or code changed since the run started (resume only with the same command, or "
                    "start a new hydra.run.dir)")
        if len(have) != len(events):
            raise JournalError(f"journal {self.path}: bar {t} has {len(have)} events but the re-run gives "
                               f"{len(events)}; the journal is damaged or the code changed since the run started")

    # -- commands ----------------------------------------------------------------------
    def command_seen(self, cid: str) -> str | None:
        row = self.db.execute("SELECT status FROM commands WHERE id = ?", (cid,)).fetchone()
        return row[0] if row else None

    def record_command(self, cid: str, t: int, status: str, payload: Any, reason: str | None = None) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO commands VALUES (?,?,?,?,?)", (cid, t, status, canon(payload), reason))

    def close(self) -> None:
        self.db.close()

    # -- fault injection ---------------------------------------------------------------
    def _maybe_die(self, phase: str, t: int) -> None:
        """AIO_LIVE_KILL_AT=PHASE:T (e.g. journal:120): SIGKILL this process right after the first
        PHASE step at or past T: ``decided`` (bar T decided and stepped, not yet journaled),
        ``journal`` (bar T committed), ``ack`` (the source acknowledged up to bar T), ``read``
        (the T-th source read, mid-bar).

        Used by the fault-injection test to kill at exact journal positions rather than
        after guessed sleeps.
        """
        if self._kill_at and self._kill_at[0] == phase and t >= self._kill_at[1]:
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def _kill_trigger() -> tuple[str, int] | None:
    v = os.environ.get("AIO_LIVE_KILL_AT")
    if not v:
        return None
    phase, _, t = v.partition(":")
    return phase, int(t)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
        return False
