"""Live: paper trading on a stream (replay or Redis), its journal, control and the publisher.

Heavy imports (redis) happen inside the functions that need them.
"""

from __future__ import annotations


def register(registry) -> None:
    from aio.live.sources import register as reg

    reg(registry)
