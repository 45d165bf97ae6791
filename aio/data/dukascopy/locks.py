"""A lock per raw file, so two runs on one range fetch each hour once.

One lock file per symbol and day under ``{cache_dir}/.locks/``; each hour is one byte
of it, locked with a POSIX record lock (``fcntl.lockf``) while its holder reads the
cache and, if the hour is missing, fetches and stores it. Locks are only tried, never
waited on: a run that finds an hour taken goes on with other hours and comes back to
it later, when it is usually in the cache (so two runs share a range's work instead of
one waiting for the other). The OS drops the locks of a killed process. Where ``fcntl`` does not exist (Windows) the locks do nothing and
two runs may fetch an hour twice, which is still safe: cache writes are atomic.

POSIX record locks belong to the process and are dropped when *any* descriptor of the
file is closed, so each lock file is opened once per run and closed at its end.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

POLL_S = (0.005, 0.1)  # first and longest wait before trying a taken hour again


class HourLocks:
    def __init__(self, root: Path, symbol: str):
        self.dir = Path(root) / ".locks" / symbol
        self._fds: dict[int, int] = {}  # day index -> descriptor

    def _fd(self, day: int) -> int:
        fd = self._fds.get(day)
        if fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            name = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
            fd = os.open(self.dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            self._fds[day] = fd
        return fd

    def try_lock(self, hour: int) -> bool:
        """Take ``hour`` (hours since the epoch) unless another process holds it."""
        if fcntl is None:
            return True
        try:
            fcntl.lockf(self._fd(hour // 24), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, hour % 24, os.SEEK_SET)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def unlock(self, hour: int) -> None:
        if fcntl is not None:
            fcntl.lockf(self._fd(hour // 24), fcntl.LOCK_UN, 1, hour % 24, os.SEEK_SET)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
