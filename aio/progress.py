"""Progress bars for long work: rich, with ETA, and never mixed into log lines.

One shared :class:`rich.progress.Progress` draws every open task on stderr. While it is
live, rich redirects stdout/stderr above the bars, and the console log handler
(:mod:`aio.logs`) writes to whatever ``sys.stderr`` is at that moment, so a log line
lands above the bars instead of through them. Bars show only on a terminal
(``AIO_PROGRESS=0`` turns them off, ``=1`` forces them); each finished task leaves one
debug line in ``log.jsonl``.

For new code::

    from aio import progress
    with progress.task("discovery", total=n, unit="candidate") as p:
        for c in candidates:
            ...
            p.advance()

    for fold in progress.track(folds, "training folds"):
        ...

Code written for tqdm swaps its import: ``from aio.progress import bar as tqdm`` takes
the same ``total/initial/desc/unit/leave/disable`` arguments and has ``update``,
``n``, ``refresh`` and ``close``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Iterable, Iterator, TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")

_lock = threading.RLock()
_progress: Any = None  # the shared rich Progress while any task is open
_open = 0


def enabled() -> bool:
    """Bars are drawn on a terminal, unless AIO_PROGRESS says otherwise."""
    env = os.environ.get("AIO_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "no", "")
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _acquire() -> Any:
    global _progress, _open
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with _lock:
        if _progress is None:
            console = Console(file=sys.stderr, force_terminal=os.environ.get("AIO_PROGRESS") == "1" or None)
            _progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[unit]}"), TaskProgressColumn(), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True,
                                 redirect_stdout=True, redirect_stderr=True, refresh_per_second=4)
            _progress.start()
        _open += 1
        return _progress


def _release() -> None:
    global _progress, _open
    with _lock:
        _open -= 1
        if _open <= 0 and _progress is not None:
            _progress.stop()
            _progress = None
            _open = 0


class Task:
    """One bar. Safe to use when bars are off: it only counts."""

    def __init__(self, description: str, total: float | None = None, unit: str = "", initial: float = 0,
                 disable: bool | None = None) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self._n = float(initial)
        self._t0 = time.perf_counter()
        self._closed = False
        show = enabled() if disable is None else not disable and enabled()
        self._p = _acquire() if show else None
        self._id = self._p.add_task(description, total=total, completed=initial, unit=unit) if self._p else None

    # rich-style
    def advance(self, n: float = 1) -> None:
        self._n += n
        if self._p is not None:
            self._p.update(self._id, completed=self._n)

    def set_total(self, total: float | None) -> None:
        self.total = total
        if self._p is not None:
            self._p.update(self._id, total=total)

    # tqdm-style
    def update(self, n: float = 1) -> None:
        self.advance(n)

    @property
    def n(self) -> float:
        return self._n

    @n.setter
    def n(self, value: float) -> None:
        self._n = float(value)
        if self._p is not None:
            self._p.update(self._id, completed=self._n)

    def refresh(self) -> None:
        if self._p is not None:
            self._p.refresh()

    def set_description(self, text: str) -> None:
        self.description = text
        if self._p is not None:
            self._p.update(self._id, description=text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._p is not None:
            self._p.remove_task(self._id)
            _release()
        log.debug("progress done", task=self.description, done=self._n, total=self.total, unit=self.unit,
                  seconds=round(time.perf_counter() - self._t0, 3))

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def task(description: str, total: float | None = None, unit: str = "", initial: float = 0,
         disable: bool | None = None) -> Task:
    """A bar for ``with``: ``with progress.task("trials", total=200) as p: p.advance()``."""
    return Task(description, total, unit, initial, disable)


def track(iterable: Iterable[T], description: str, total: float | None = None, unit: str = "") -> Iterator[T]:
    """Iterate with a bar (total from ``len`` when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Task(description, total, unit) as t:
        for item in iterable:
            yield item
            t.advance()


def bar(total: float | None = None, initial: float = 0, desc: str = "", unit: str = "it", leave: bool = False,
        disable: bool | None = None, **_: Any) -> Task:
    """tqdm's constructor over :class:`Task` (``leave``/``mininterval`` and the like are ignored)."""
    return Task(desc or "working", total, unit, initial, disable)


def lightning_bar() -> Any:
    """Lightning's progress bar drawn as an aio bar (batches of each epoch, with ETA),
    instead of Lightning's tqdm bar that would cut through log lines."""
    from lightning.pytorch.callbacks import ProgressBar

    class _AioBar(ProgressBar):
        def __init__(self) -> None:
            super().__init__()
            self._enabled = True
            self._task: Task | None = None

        def disable(self) -> None:
            self._enabled = False

        def enable(self) -> None:
            self._enabled = True

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if self._enabled and trainer.is_global_zero:
                total = self.total_train_batches
                self._task = Task(f"epoch {trainer.current_epoch + 1}",
                                  total=None if total == float("inf") else total, unit="batch")

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if self._task is not None:
                self._task.n = batch_idx + 1

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if self._task is not None:
                self._task.close()
                self._task = None

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if self._task is not None:
                self._task.close()
                self._task = None

    return _AioBar()
