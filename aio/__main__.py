"""``python -m aio``: the Hydra experiment app.

Experiment presets live in the top-level ``experiments/`` folder and are offered to
Hydra as the ``experiment`` config group (``+experiment=NAME``).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from aio.appconfig import register_experiments


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    from aio.errors import AioError
    from aio.pipeline import run

    try:
        result = run(cfg)
    except AioError as exc:
        # A user error: say what and how to fix it, without a traceback. In a sweep the
        # other jobs may well be fine (another symbol, another strategy): the failed job
        # keeps its failed manifest, the sweep goes on, and the exit status says it at the end.
        print(f"error: {exc}", file=sys.stderr)
        if not _in_multirun():
            sys.exit(2)
        _FAILED_JOBS.append((_job_label(), str(exc).splitlines()[0]))
        return None
    return result.objective


_FAILED_JOBS: list[tuple[str, str]] = []


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _job_label() -> str:
    from hydra.core.hydra_config import HydraConfig

    job = HydraConfig.get().job
    return f"job {job.num} ({' '.join(job.override_dirname.split(',')) or 'no overrides'})"


def main() -> None:
    from aio.errors import AioError

    try:
        register_experiments()  # experiments/, plugin folders (their config nodes), resolvers
    except AioError as exc:  # e.g. AIO_PLUGINS_DIR naming a folder that does not exist
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    app()
    if _FAILED_JOBS:  # a sweep that ran to the end with user errors in some jobs
        print(f"error: {len(_FAILED_JOBS)} job(s) of the sweep failed; the others ran:", file=sys.stderr)
        for label, first_line in _FAILED_JOBS:
            print(f"  {label}: {first_line}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
