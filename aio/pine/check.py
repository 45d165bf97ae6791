"""Checks an exported Pine script: it parses (pynescript 0.3, in an isolated venv)
and follows our rules: known ``ta.*`` names, no arguments removed in v6, no
``lookahead_on`` without a ``[1]`` offset (that would read the future).

pynescript 0.3 needs antlr4 4.13 while Hydra pins 4.9, so the parser runs in its
own venv (default ``.tools/pine-venv``, created on first use) through
``tools/pine_parse.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aio.appconfig import REPO

PYNESCRIPT = "pynescript==0.3.0"

# ta.* functions of Pine v6 (reference manual, namespace ta).
TA_FUNCTIONS = frozenset(
    """alma atr barssince bb bbw cci change cmo cog correlation cross crossover crossunder cum dev dmi ema
    falling highest highestbars hma kc kcw linreg lowest lowestbars macd max median mfi min mode mom
    percentile_linear_interpolation percentile_nearest_rank percentrank pivothigh pivotlow pivot_point_levels
    range rci rising rma roc rsi sar sma stdev stoch supertrend swma tsi valuewhen variance vwap vwma wma wpr
    tr obv accdist iii nvi pvi pvt wad wvad""".split()
)
# (function prefix, argument) pairs that v6 removed.
REMOVED_V6_ARGS = {
    ("strategy.entry", "when"), ("strategy.order", "when"), ("strategy.exit", "when"),
    ("strategy.close", "when"), ("strategy.close_all", "when"), ("strategy.cancel", "when"),
    ("strategy.cancel_all", "when"), ("plot", "transp"), ("plotshape", "transp"), ("plotchar", "transp"),
    ("plotarrow", "transp"), ("bgcolor", "transp"), ("fill", "transp"), ("input", "type"),
}
REMOVED_V6_FUNCS = {"study", "security", "rsi", "sma", "ema", "crossover", "crossunder", "tostring"}


@dataclass
class PineReport:
    file: str
    parsed: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.parsed and not self.problems


READY = ".aio-ready"  # written last: a venv without it was cut short (killed mid-install) and is rebuilt


def tool_python(venv: Path | None = None) -> Path:
    """The tool venv's python, creating the venv on first use.

    Two runs (or test workers) may ask at once, and a run may be killed half way through
    ``pip install``: creation holds an exclusive lock beside the venv, and a venv counts only
    once its ready-marker is written."""
    import fcntl
    import shutil

    venv = Path(venv or os.environ.get("AIO_PINE_VENV") or REPO / ".tools" / "pine-venv")
    py = venv / "bin" / "python"
    if (venv / READY).exists():
        return py
    venv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(venv.parent / f".{venv.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not (venv / READY).exists():  # another process may have finished it while we waited
            if py.exists() and _has_pynescript(py):
                (venv / READY).write_text(PYNESCRIPT)  # a working venv from before the marker existed
            else:
                shutil.rmtree(venv, ignore_errors=True)
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
                subprocess.run([str(py), "-m", "pip", "install", "-q", PYNESCRIPT], check=True)
                (venv / READY).write_text(PYNESCRIPT)
    finally:
        os.close(fd)  # closing the descriptor releases the lock
    return py


def _has_pynescript(py: Path) -> bool:
    return subprocess.run([str(py), "-c", "import pynescript"], capture_output=True).returncode == 0


def check_files(paths: list[Path], venv: Path | None = None) -> list[PineReport]:
    py = tool_python(venv)
    out = subprocess.run(
        [str(py), str(REPO / "tools" / "pine_parse.py"), *map(str, paths)],
        capture_output=True, text=True, check=True, timeout=300,
    )
    return [apply_rules(r) for r in json.loads(out.stdout)]


def apply_rules(parsed: dict) -> PineReport:
    rep = PineReport(file=parsed["file"], parsed=bool(parsed["ok"]))
    if not parsed["ok"]:
        rep.problems.append(f"does not parse: {parsed['error']}")
        return rep
    if parsed.get("version") != 6:
        rep.problems.append(f"//@version=6 expected, found {parsed.get('version')}")
    for call in parsed["calls"]:
        name = call["name"] or ""
        if name.startswith("ta.") and name[3:] not in TA_FUNCTIONS:
            rep.problems.append(f"unknown function {name}")
        if name in REMOVED_V6_FUNCS:
            rep.problems.append(f"{name}() does not exist in Pine v6 (use its namespaced form)")
        for kw in call["kwargs"]:
            if (name, kw) in REMOVED_V6_ARGS:
                rep.problems.append(f"{name}({kw}=...) was removed in Pine v6")
        if name == "request.security" and "lookahead_on" in call["kwargs"].get("lookahead", ""):
            expr = call["args"][2] if len(call["args"]) > 2 else call["kwargs"].get("expression", "")
            if "[1]" not in expr:
                rep.problems.append("request.security with lookahead_on must read a [1]-offset series (else it sees the future)")
    return rep
