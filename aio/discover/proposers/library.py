"""Strategies already known, re-tested on this window: the shipped ones (conf/strategy)
and every strategy in the library that a discovery run wrote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from aio.config import param
from aio.discover.candidate import Candidate


@dataclass
class LibraryConfig:
    shipped: bool = param(True, help="include conf/strategy/*.yaml (those Pine can run)")
    stored: bool = param(True, help="include the strategy library's discovered strategies")
    # every run stores all its candidates; re-testing them all would grow each run by the
    # size of the last, so by default only the strategies a past funnel accepted come back
    only_accepted: bool = param(True, help="stored: only those a past run accepted")


class LibraryProposer:
    Config = LibraryConfig
    name = "library"

    def __init__(self, cfg: LibraryConfig | None = None) -> None:
        self.cfg = cfg or LibraryConfig()

    def propose(self, ctx: Any, budget: int) -> list[Candidate]:
        from aio.strategy import CONF_DIR

        out: list[Candidate] = []
        if self.cfg.shipped:
            for path in sorted(CONF_DIR.glob("*.yaml")):
                spec = yaml.safe_load(path.read_text())
                spec.pop("from", None)
                out.append(Candidate("library", spec, {"shipped": True, "source": f"conf/strategy/{path.name}"}))
        if self.cfg.stored and ctx.library is not None:
            from aio.discover.library import stored_specs

            for sid, spec, meta in stored_specs(ctx.library, only_accepted=self.cfg.only_accepted):
                out.append(Candidate("library", spec, {"shipped": True, "source": f"library:{sid}", **meta}))
        return out[:budget] if budget else out
