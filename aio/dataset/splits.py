"""Time splits with an embargo, and walk-forward folds. Rows are in time order; nothing
is ever shuffled across time.

Between two consecutive blocks the earlier block loses its last rows until at least
``embargo`` bars lie strictly between its last decision bar and the next block's first
(``first_next - last_prev - 1 >= embargo``). With ``embargo >= label horizon`` no label
of an earlier block reaches a bar the next block has seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aio.dataset.config import SplitConfig


@dataclass
class Block:
    start: int  # first row (inclusive)
    stop: int  # last row (exclusive)

    def rows(self) -> np.ndarray:
        return np.arange(self.start, self.stop, dtype=np.int64)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def as_list(self) -> list[int]:
        return [int(self.start), int(self.stop)]


def purge(prev: Block, nxt: Block, bar_index: np.ndarray, embargo: int) -> Block:
    """``prev`` shortened so that ``embargo`` bars separate it from ``nxt``."""
    if len(nxt) == 0 or len(prev) == 0:
        return prev
    first_next = bar_index[nxt.start]
    keep = bar_index[prev.start : prev.stop] <= first_next - embargo - 1
    return Block(prev.start, prev.start + int(keep.sum()))  # bar_index is increasing


def _cut(n: int, fractions: list[float]) -> list[Block]:
    edges = np.floor(np.cumsum([0.0] + fractions) * n + 1e-9).astype(int)
    edges[-1] = n
    return [Block(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def time_splits(bar_index: np.ndarray, cfg: SplitConfig, embargo: int) -> dict[str, Block]:
    """train / val / test blocks of rows, purged at each boundary."""
    n = len(bar_index)
    train, val, test = _cut(n, [cfg.train, cfg.val, cfg.test])
    train = purge(train, val if len(val) else test, bar_index, embargo)
    val = purge(val, test, bar_index, embargo)
    return {"train": train, "val": val, "test": test}


def walk_forward(bar_index: np.ndarray, stop: int, folds: int, scheme: str, embargo: int) -> list[dict[str, Block]]:
    """``folds`` (train, val) pairs over rows ``[0, stop)``: val blocks follow their train in time."""
    if folds <= 0:
        return []
    blocks = _cut(stop, [1.0 / (folds + 1)] * (folds + 1))
    out = []
    for j in range(folds):
        start = 0 if scheme == "expanding" else blocks[j].start
        train = purge(Block(start, blocks[j].stop), blocks[j + 1], bar_index, embargo)
        out.append({"train": train, "val": blocks[j + 1]})
    return out


def split_labels(n: int, blocks: dict[str, Block]) -> np.ndarray:
    """Per-row split name; rows removed by purging are ``gap``."""
    out = np.full(n, "gap", dtype=object)
    for name, b in blocks.items():
        out[b.start : b.stop] = name
    return out
