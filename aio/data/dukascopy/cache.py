"""Raw file cache: files exactly as received, written atomically, only after verification.

Layout mirrors the datafeed: ``{cache_dir}/{SYM}/{YYYY}/{MM0}/{DD}/{HH}h_ticks.bi5``;
an hour fetched from the JSON API failover is stored beside it as ``...h_ticks.json``.
A 0-byte ``.bi5`` records a verified hour without ticks (a 404 or an empty file while
the market is closed). An hour that came back empty while the market was open and its
neighbours have ticks is not verified: ``...h_ticks.suspect`` records it (with the
reason), it is fetched again on every online run, and offline runs use it as a
suspect-empty hour.

Writers use a unique temp file in the target folder and ``os.replace``, so readers and
concurrent writers (two processes on one range) only ever see whole files; the
content of a given hour is the same whoever wins the rename.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from aio.data.dukascopy.bi5 import tick_path

STALE_TMP_S = 3600  # temp files older than this belong to killed runs


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RawCache:
    def __init__(self, root: Path, symbol: str):
        self.root = Path(root)
        self.symbol = symbol

    def path(self, hour: int, ext: str = "bi5") -> Path:
        rel = tick_path(self.symbol, hour)
        if ext != "bi5":
            rel = rel[: -len("bi5")] + ext
        return self.root / rel

    def find(self, hour: int) -> tuple[str, Path] | None:
        """("bi5"|"json", path) of the cached hour, bi5 preferred; None when not cached."""
        for ext in ("bi5", "json"):
            p = self.path(hour, ext)
            if p.is_file():
                return ext, p
        return None

    def put(self, hour: int, data: bytes, ext: str = "bi5") -> Path:
        p = self.path(hour, ext)
        atomic_write(p, data)
        self.path(hour, "suspect").unlink(missing_ok=True)  # settled now
        return p

    def drop(self, hour: int) -> None:
        """Forget a cached hour that failed re-verification, so it is fetched again."""
        for ext in ("bi5", "json"):
            self.path(hour, ext).unlink(missing_ok=True)

    def mark_suspect(self, hour: int, reason: str) -> Path:
        """Record an empty answer inside market hours: not a verified empty hour."""
        p = self.path(hour, "suspect")
        atomic_write(p, reason.encode())
        return p

    def suspect(self, hour: int) -> str | None:
        """Why the hour is suspect (the recorded reason), or None."""
        p = self.path(hour, "suspect")
        try:
            return p.read_text() or "empty"
        except FileNotFoundError:
            return None

    def sweep_tmp(self, folder: Path) -> int:
        """Remove temp files of killed runs (old enough not to belong to a live writer)."""
        n = 0
        if not folder.is_dir():
            return 0
        cutoff = time.time() - STALE_TMP_S
        for p in folder.glob(".*.tmp"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    n += 1
            except FileNotFoundError:
                pass
        return n
