"""Rendering many windows to PNG over all cores, with a progress bar.

Small jobs render in this process (a pool costs ~0.5 s to start); large ones are
cut into fixed chunks rendered by a process pool. The whole-series arrays go to each
worker once (pool initializer); tasks carry only window end indices. Results come back
in chunk order, so the output is the same whatever the number of workers.
"""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterator

import numpy as np
import structlog

from aio.render.base import Renderer, SeriesSet

log = structlog.get_logger(__name__)

# Below this many charts one process is faster: a forkserver pool takes ~0.4-0.6 s to
# start (measured on 2 busy cores) while one process renders 4k-9k charts/s vectorised.
POOL_THRESHOLD = 8000

_WORKER: dict[str, Any] = {}


def _init_worker(renderer: Renderer, series: SeriesSet) -> None:
    _WORKER["renderer"] = renderer
    _WORKER["series"] = series


def _render_chunk(ends: np.ndarray) -> list[bytes]:
    renderer: Renderer = _WORKER["renderer"]
    series: SeriesSet = _WORKER["series"]
    return renderer.render_png(series.windows(ends, renderer.bars))


def worker_count(requested: int) -> int:
    """``requested`` processes, or every core this process may use when 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _importable(obj: Any) -> bool:
    """Whether a fresh interpreter can import ``obj``'s class by its module name."""
    name = type(obj).__module__
    if name.startswith("aio_local_plugins") or name == "__main__":
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _context(renderer: Renderer) -> mp.context.BaseContext:
    """forkserver where it can work, fork otherwise.

    Forking a process that runs lancedb's or torch's threads risks a deadlock in the
    child, so workers come from a clean forkserver. A renderer loaded from a local
    plugins/ file cannot be re-imported there; it is forked (the workers only run
    numpy and zlib).
    """
    methods = mp.get_all_start_methods()
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    main_ok = main_file is None or os.path.isfile(main_file)  # `python - < script` cannot be re-imported
    if "forkserver" in methods and main_ok and _importable(renderer):
        return mp.get_context("forkserver")
    return mp.get_context("fork" if "fork" in methods else "spawn")


def iter_render_pngs(
    renderer: Renderer,
    series: SeriesSet,
    ends: np.ndarray,
    *,
    workers: int = 0,
    chunk: int = 256,
    progress: bool = True,
    desc: str = "rendering charts",
    pool_threshold: int = POOL_THRESHOLD,
) -> Iterator[list[bytes]]:
    """PNG bytes of the windows ending at ``ends``, yielded ``chunk`` charts at a time, in order."""
    from aio.progress import bar as tqdm  # rich bars that keep clear of log lines

    ends = np.asarray(ends, dtype=np.int64)
    total = len(ends)
    chunk = max(1, int(chunk))
    n_workers = min(worker_count(workers), max(1, -(-total // chunk)))
    chunks = [ends[i : i + chunk] for i in range(0, total, chunk)]
    bar = tqdm(total=total, desc=desc, unit="chart", disable=not progress or total == 0, leave=False)
    try:
        if n_workers <= 1 or total < pool_threshold:
            for part in chunks:
                pngs = renderer.render_png(series.windows(part, renderer.bars))
                bar.update(len(part))
                yield pngs
        else:
            log.debug("render pool", workers=n_workers, charts=total, chunks=len(chunks))
            with ProcessPoolExecutor(n_workers, mp_context=_context(renderer), initializer=_init_worker,
                                     initargs=(renderer, series)) as pool:
                for part, pngs in zip(chunks, pool.map(_render_chunk, chunks)):
                    bar.update(len(part))
                    yield pngs
    finally:
        bar.close()


def render_pngs(renderer: Renderer, series: SeriesSet, ends: np.ndarray, **kwargs: Any) -> list[bytes]:
    """PNG bytes of the window ending at each index of ``ends``, in that order."""
    out: list[bytes] = []
    for pngs in iter_render_pngs(renderer, series, ends, **kwargs):
        out.extend(pngs)
    return out
