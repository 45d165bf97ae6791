"""Structured logging: short on the console, everything as JSON lines in the run folder.

The console shows ``log_level`` and up (INFO: one line per stage); ``log.jsonl`` keeps
DEBUG too (per-epoch and per-trial lines). The console handler writes to the current
``sys.stderr`` at each line, so while progress bars are live (:mod:`aio.progress`)
log lines go above them, never through them.
"""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import structlog

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _CurrentStderr(io.TextIOBase):
    """sys.stderr as it is now (rich swaps it while bars are drawn), not as it was at setup."""

    def write(self, s: str) -> int:
        return sys.stderr.write(s)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def setup_logging(run_dir: Path | None = None, level: str = "INFO") -> None:
    prev_class = logging.getLoggerClass()
    structlog.configure(
        processors=_SHARED + [structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    if prev_class is not logging.Logger:
        # structlog's factory replaces the process-wide logger class; a library that
        # installed its own (kaleido's logistro adds debug2) would then crash on its loggers
        logging.setLoggerClass(prev_class)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_aio", False):
            root.removeHandler(h)
            h.close()
    console = logging.StreamHandler(_CurrentStderr())
    console.setLevel(level)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())],
            foreign_pre_chain=_SHARED,
        )
    )
    console._aio = True  # type: ignore[attr-defined]
    root.addHandler(console)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / "log.jsonl", encoding="utf-8")
        fh.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                            structlog.processors.dict_tracebacks,
                            structlog.processors.JSONRenderer()],
                foreign_pre_chain=_SHARED,
            )
        )
        fh._aio = True  # type: ignore[attr-defined]
        fh.setLevel(logging.DEBUG)
        root.addHandler(fh)
    root.setLevel(level)
    # aio's own debug lines (per epoch, per trial) reach log.jsonl; other libraries stay at the run's level
    logging.getLogger("aio").setLevel(logging.DEBUG if run_dir is not None else level)
    for noisy in ("numba", "httpx", "httpcore", "matplotlib", "PIL", "urllib3", "lightning", "torch",
                  "choreographer", "kaleido", "logistro", "browser_proc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
