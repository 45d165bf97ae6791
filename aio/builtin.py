"""Registers aio's built-in plugins, the same way a third-party package would.

Exposed as the ``builtin`` entry point of the ``aio.plugins`` group. Each module
listed here has a ``register(registry)`` function.
"""

from __future__ import annotations

import importlib

BUILTIN_MODULES = [
    "aio.data.synthetic",
    "aio.data.file",
    "aio.data.dukascopy",
    "aio.bars",
    "aio.indicators",
    "aio.strategy",
    "aio.sizing",
    "aio.optimize",
    "aio.render",
    "aio.dataset",
    "aio.models",
    "aio.vlm",
    "aio.store",
    "aio.pine",
    "aio.discover.proposers",
]


def register(registry) -> None:
    for name in BUILTIN_MODULES:
        importlib.import_module(name).register(registry)
