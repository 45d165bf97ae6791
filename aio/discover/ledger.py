"""The trial ledger: every evaluated candidate and parameter trial, persisted, append-only.

One SQLite file (``<run>/discover/ledger.sqlite``, WAL journal, ``synchronous=FULL``).
Each record is one transaction: a process killed mid-write leaves either the whole row
or nothing. Return series are stored as zlib-compressed float64 with a SHA-256 of the raw
bytes, checked on every read, so a damaged series is an error naming the row, never a
quiet number. Several processes may append at once (SQLite's file lock; writers wait up
to ``busy_timeout_s``).

The ledger feeds the Deflated Sharpe: ``n_trials`` (everything evaluated),
``n_distinct_rules`` (distinct canonical rule texts) and :meth:`Ledger.effective_trials`,
the number of effectively independent trials from the correlation of the trials' return
series (:func:`aio.discover.gates.effective_trials`), never below the distinct rules.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping

import numpy as np

from aio.errors import AioError, ConfigError

SCHEMA_VERSION = 1
KINDS = ("candidate", "trial")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('candidate', 'trial')),
    rule TEXT NOT NULL,
    rule_hash TEXT NOT NULL,
    params TEXT NOT NULL,
    proposer TEXT NOT NULL,
    window TEXT NOT NULL,
    metrics TEXT NOT NULL,
    is_returns BLOB, is_len INTEGER, is_sha TEXT,
    oos_returns BLOB, oos_len INTEGER, oos_sha TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_candidate ON trials (candidate_id);
CREATE INDEX IF NOT EXISTS trials_rule ON trials (rule_hash);
CREATE TABLE IF NOT EXISTS holdout (
    candidate_id TEXT PRIMARY KEY,
    window TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    result TEXT
);
"""


class LedgerError(AioError):
    """The ledger cannot be opened or written."""


class LedgerCorruptError(LedgerError):
    """A stored row does not match its checksum."""


# -- canonical rule text -------------------------------------------------------------


def _fmt_num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


_PREC = {"or": 1, "and": 2, "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5, "*": 6, "/": 6}


def _print(node: Any, parent: int = 0) -> str:
    from aio.strategy.expr import Binary, Bool, Call, History, Name, Num, Unary

    if isinstance(node, Num):
        return _fmt_num(node.value)
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, Name):
        return node.key
    if isinstance(node, Call):
        return f"{node.fn}({', '.join(_print(a) for a in node.args)})"
    if isinstance(node, History):
        return f"{_print(node.operand, 9)}[{node.offset}]"
    if isinstance(node, Unary):
        inner = _print(node.operand, 7)
        return f"not {inner}" if node.op == "not" else f"-{inner}"
    if isinstance(node, Binary):
        p = _PREC[node.op]
        # left-associative: the right operand needs brackets at equal precedence
        text = f"{_print(node.left, p)} {node.op} {_print(node.right, p + 1)}"
        return f"({text})" if p < parent else text
    raise TypeError(f"unknown rule node {node!r}")


def canonical_rule(text: str) -> str:
    """One spelling per rule: each ``;``- or newline-separated expression is parsed and
    printed back with normalised spacing, numbers and brackets (``a>b  and(c<1.0)`` ->
    ``a > b and c < 1``); parts that are not expressions (e.g. ``entry long:``
    labels) keep their words with single spaces."""
    from aio.strategy.expr import RuleSyntaxError, parse

    parts = []
    for raw in str(text).replace("\n", ";").split(";"):
        part = " ".join(raw.split())
        if not part:
            continue
        label, sep, expr = part.rpartition(":") if ":" in part else ("", "", part)
        try:
            body = _print(parse(expr))
        except RuleSyntaxError:
            body = " ".join(expr.split())
        parts.append(f"{label.strip()}: {body}" if sep else body)
    return "; ".join(parts)


def rule_hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- records ---------------------------------------------------------------------------


def _json(value: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    return json.dumps(value, sort_keys=True, default=default)


def _pack(series: np.ndarray | None) -> tuple[bytes | None, int | None, str | None]:
    if series is None:
        return None, None, None
    a = np.ascontiguousarray(np.asarray(series, dtype="<f8").reshape(-1))
    raw = a.tobytes()
    return zlib.compress(raw, 6), len(a), hashlib.sha256(raw).hexdigest()


def _unpack(blob: bytes | None, n: int | None, sha: str | None, where: str) -> np.ndarray | None:
    if blob is None:
        return None
    try:
        raw = zlib.decompress(blob)
    except zlib.error as exc:
        raise LedgerCorruptError(f"{where}: the stored return series does not decompress ({exc})") from None
    if hashlib.sha256(raw).hexdigest() != sha or len(raw) != 8 * int(n or 0):
        raise LedgerCorruptError(f"{where}: the stored return series fails its checksum")
    return np.frombuffer(raw, dtype="<f8").copy()


@dataclass
class LedgerRow:
    id: int
    candidate_id: str
    kind: str
    rule: str
    rule_hash: str
    params: dict
    proposer: str
    window: dict
    metrics: dict
    is_len: int | None
    oos_len: int | None
    created: float


@dataclass
class TrialRecord:
    """What :meth:`Ledger.record_many` takes (the keywords of :meth:`Ledger.record`)."""

    candidate_id: str
    rule: str
    params: Mapping[str, Any]
    proposer: str
    window: Mapping[str, Any]
    kind: Literal["candidate", "trial"] = "trial"
    is_returns: np.ndarray | None = None
    oos_returns: np.ndarray | None = None
    metrics: Mapping[str, Any] | None = None


class Ledger:
    """Append-only ledger of evaluated candidates and trials (SQLite, crash-safe)."""

    FILE = "ledger.sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 60.0) -> None:
        path = Path(path)
        if path.suffix != ".sqlite":
            path = path / self.FILE  # a run's discover/ folder
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            with self._tx():
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(stmt)
                row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise LedgerError(f"{path}: ledger schema {row[0]}, this aio writes {SCHEMA_VERSION}; "
                                      "start a new run folder")
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{path}: cannot open the trial ledger ({exc}); is it a ledger file?") from None

    # -- plumbing
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing
    @staticmethod
    def _row(rec: TrialRecord) -> tuple:
        if rec.kind not in KINDS:
            raise ConfigError(f"ledger kind={rec.kind!r}: choose one of {', '.join(KINDS)}")
        if not rec.candidate_id:
            raise ConfigError("a ledger record needs a candidate_id")
        canon = canonical_rule(rec.rule)
        if not canon:
            raise ConfigError(f"candidate {rec.candidate_id}: empty rule text")
        return (rec.candidate_id, rec.kind, canon, rule_hash(canon), _json(dict(rec.params)), rec.proposer,
                _json(dict(rec.window)), _json(dict(rec.metrics or {})), *_pack(rec.is_returns),
                *_pack(rec.oos_returns), time.time())

    _INSERT = ("INSERT INTO trials (candidate_id, kind, rule, rule_hash, params, proposer, window, metrics, "
               "is_returns, is_len, is_sha, oos_returns, oos_len, oos_sha, created) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

    def record(
        self,
        *,
        candidate_id: str,
        rule: str,
        params: Mapping[str, Any],
        proposer: str,
        window: Mapping[str, Any],
        kind: Literal["candidate", "trial"] = "trial",
        is_returns: np.ndarray | None = None,
        oos_returns: np.ndarray | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one evaluation; returns its row id. Atomic: all of it or nothing."""
        row = self._row(TrialRecord(candidate_id, rule, params, proposer, window, kind, is_returns, oos_returns, metrics))
        with self._tx() as db:
            return int(db.execute(self._INSERT, row).lastrowid)

    def record_many(self, records: Iterable[TrialRecord]) -> int:
        """Append many evaluations in one transaction (all or none); returns how many."""
        rows = [self._row(r) for r in records]
        with self._tx() as db:
            db.executemany(self._INSERT, rows)
        return len(rows)

    # -- reading
    @property
    def n_trials(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    @property
    def n_distinct_rules(self) -> int:
        return int(self._db.execute("SELECT COUNT(DISTINCT rule_hash) FROM trials").fetchone()[0])

    def rows(self, kind: str | None = None, candidate_id: str | None = None) -> list[LedgerRow]:
        q = ("SELECT id, candidate_id, kind, rule, rule_hash, params, proposer, window, metrics, is_len, oos_len, "
             "created FROM trials")
        cond, args = [], []
        if kind:
            cond.append("kind = ?")
            args.append(kind)
        if candidate_id:
            cond.append("candidate_id = ?")
            args.append(candidate_id)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        out = []
        for r in self._db.execute(q + " ORDER BY id", args):
            try:
                params, window, metrics = json.loads(r[5]), json.loads(r[7]), json.loads(r[8])
            except json.JSONDecodeError as exc:
                raise LedgerCorruptError(f"{self.path} row {r[0]}: stored JSON does not parse ({exc})") from None
            out.append(LedgerRow(r[0], r[1], r[2], r[3], r[4], params, r[6], window, metrics, r[9], r[10], r[11]))
        return out

    def returns(self, row_id: int, which: Literal["is", "oos"] = "is") -> np.ndarray | None:
        col = _which(which)
        r = self._db.execute(f"SELECT {col}_returns, {col}_len, {col}_sha FROM trials WHERE id = ?", (row_id,)).fetchone()
        if r is None:
            raise LedgerError(f"{self.path}: no row {row_id}")
        return _unpack(r[0], r[1], r[2], f"{self.path} row {row_id} ({which})")

    def return_matrix(self, which: Literal["is", "oos"] = "is", period: int = 1,
                      kind: str | None = None) -> tuple[list[int], np.ndarray]:
        """(row ids, T x N matrix) of the stored series of the most common length,
        summed over blocks of ``period`` bars. Rows of other lengths are left out
        (they were evaluated on another window and cannot be correlated)."""
        from aio.discover.gates import aggregate

        col = _which(which)
        q = f"SELECT {col}_len, COUNT(*) FROM trials WHERE {col}_returns IS NOT NULL"
        args: list = []
        if kind:
            q += " AND kind = ?"
            args.append(kind)
        lens = self._db.execute(q + f" GROUP BY {col}_len ORDER BY COUNT(*) DESC, {col}_len DESC", args).fetchall()
        if not lens:
            return [], np.zeros((0, 0))
        n = lens[0][0]
        q = f"SELECT id, {col}_returns, {col}_len, {col}_sha FROM trials WHERE {col}_len = ?"
        if kind:
            q += " AND kind = ?"
        ids, cols = [], []
        for rid, blob, ln, sha in self._db.execute(q + " ORDER BY id", [n, *args]):
            ids.append(int(rid))
            cols.append(aggregate(_unpack(blob, ln, sha, f"{self.path} row {rid} ({which})"), period))
        return ids, np.column_stack(cols)

    def effective_trials(self, which: Literal["is", "oos"] = "is", *, period: int = 60,
                         method: Literal["cluster", "eigen"] = "cluster", threshold: float = 0.5):
        """Effective number of independent trials for the DSR (see gates.effective_trials).

        Correlations are taken over ``period``-bar sums of the stored series (bar returns
        are mostly zero while flat; sums over an hour of M1 are what a strategy's
        similarity shows in). Floor: the number of distinct rules; rows without a series
        of the common length still count there.
        """
        from aio.discover.gates import effective_trials

        _, m = self.return_matrix(which, period)
        floor = max(1, self.n_distinct_rules)
        if m.size == 0:
            from aio.discover.gates import EffectiveTrials

            return EffectiveTrials(n_eff=floor, estimate=0.0, n_trials=0, floor=floor, method=method)
        return effective_trials(m, method=method, threshold=threshold, floor=floor)

    def deflated_sharpe(self, returns: np.ndarray, which: Literal["is", "oos"] = "is", *, period: int = 60,
                        method: Literal["cluster", "eigen"] = "cluster", threshold: float = 0.5) -> dict:
        """DSR of a selected candidate's bar ``returns`` against this ledger's trials
        (both summed over ``period`` bars so their Sharpe ratios are comparable); see
        :func:`aio.discover.gates.deflated_sharpe_from_trials`."""
        from aio.discover.gates import aggregate, deflated_sharpe_from_trials

        _, m = self.return_matrix(which, period)
        floor = max(1, self.n_distinct_rules)
        sel = aggregate(np.asarray(returns, dtype=np.float64), period)
        if m.size == 0:
            from aio.discover.gates import deflated_sharpe_ratio

            out = deflated_sharpe_ratio(sel, np.zeros(0), floor)
            out["effective_trials"] = {"n_eff": floor, "n_trials": 0, "floor": floor, "method": method}
        else:
            out = deflated_sharpe_from_trials(sel, m, floor=floor, method=method, threshold=threshold)
        out["ledger_trials"] = self.n_trials
        out["period_bars"] = period
        return out

    def check(self) -> dict:
        """Verify the whole file: SQLite's integrity check and every series' checksum."""
        ok = self._db.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise LedgerCorruptError(f"{self.path}: integrity check failed: {ok}")
        n = 0
        for rid, *cols in self._db.execute(
                "SELECT id, is_returns, is_len, is_sha, oos_returns, oos_len, oos_sha FROM trials"):
            _unpack(cols[0], cols[1], cols[2], f"{self.path} row {rid} (is)")
            _unpack(cols[3], cols[4], cols[5], f"{self.path} row {rid} (oos)")
            n += 1
        return {"rows": n, "distinct_rules": self.n_distinct_rules, "integrity": ok}


def _which(which: str) -> str:
    if which not in ("is", "oos"):
        raise ConfigError(f"which={which!r}: choose is or oos")
    return which


__all__ = ["Ledger", "LedgerError", "LedgerCorruptError", "LedgerRow", "TrialRecord", "canonical_rule", "rule_hash"]
