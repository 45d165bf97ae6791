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
        # A user error: say what and how to fix it, without a traceback.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    return result.objective


def main() -> None:
    from aio.errors import AioError

    try:
        register_experiments()  # experiments/, plugin folders (their config nodes), resolvers
    except AioError as exc:  # e.g. AIO_PLUGINS_DIR naming a folder that does not exist
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
