"""Static PNGs of the report's figures (``report/*.png``), for sharing.

kaleido 1.x renders through a Chromium it drives with the DevTools protocol
(choreographer finds ``chromium`` on PATH, or ``BROWSER_PATH``). Without a browser the
run warns once and goes on without PNGs; ``AIO_REPORT_PNG=0`` turns them off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import structlog

log = structlog.get_logger(__name__)
_warned = False


def browser_path() -> str | None:
    try:
        from choreographer.browsers.chromium import Chromium

        path = Chromium.find_browser(skip_local=False)
    except Exception:  # choreographer missing or broken: no PNGs, same as no browser
        return None
    # BROWSER_PATH is taken as given by choreographer; a stale one counts as no browser
    return path if path and Path(path).is_file() else None


def _warn_once(reason: str) -> None:
    global _warned
    if not _warned:
        log.warning("report PNGs skipped", reason=reason,
                    fix="install Chromium (Debian: apt-get install chromium) or set BROWSER_PATH")
        _warned = True


def write_pngs(figures: Mapping[str, Any], out_dir: Path, width: int = 1400) -> list[Path]:
    """One PNG per figure, all through one browser session. Returns the files written."""
    if not figures or os.environ.get("AIO_REPORT_PNG", "1") == "0":
        return []
    if browser_path() is None:
        _warn_once("no Chromium found for kaleido")
        return []
    import kaleido

    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name, fig in figures.items():
        path = out_dir / f"{name}.png"
        w = fig.layout.width or width
        h = fig.layout.height or 500
        jobs.append({"fig": fig, "path": str(path), "opts": {"width": w, "height": h, "scale": 1}})
    try:
        kaleido.write_fig_from_object_sync(jobs)
    except Exception as exc:  # a browser that will not start must not lose the run
        _warn_once(f"kaleido failed: {str(exc)[:200]}")
        return []
    return [Path(j["path"]) for j in jobs if Path(j["path"]).is_file()]
