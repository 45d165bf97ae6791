"""Structured logging: pretty on the console, JSON lines in the run folder."""

from __future__ import annotations

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


def setup_logging(run_dir: Path | None = None, level: str = "INFO") -> None:
    structlog.configure(
        processors=_SHARED + [structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_aio", False):
            root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
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
        root.addHandler(fh)
    root.setLevel(level)
    for noisy in ("numba", "httpx", "httpcore", "matplotlib", "PIL", "urllib3", "lightning", "torch",
                  "choreographer", "kaleido", "logistro", "browser_proc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
