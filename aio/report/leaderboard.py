"""One table ranking the jobs of a Hydra multirun.

Each job folder (``<sweep dir>/<job number>/``) holds ``metrics.json`` and
``.hydra/overrides.yaml``; the table ranks jobs by their out-of-sample objective
(``metrics.optimize.oos_objective``, the stitched walk-forward OOS result) and,
for jobs without a search, by a backtest metric (``--metric``). Written as
``leaderboard.csv``, ``.json`` and ``.html`` in the sweep folder, automatically at
the end of a multirun (:class:`LeaderboardCallback`, configured in
``conf/hydra/default.yaml``) or by hand::

    python -m aio.report.leaderboard outputs/multirun/2024-05-01_12-00-00_adhoc
"""

from __future__ import annotations

import argparse
import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

import structlog

log = structlog.get_logger(__name__)

FALLBACK_METRIC = "backtest.net_profit"
MINIMIZE = {"max_drawdown", "max_drawdown_pct"}
SHOWN = ("net_profit", "sharpe", "sortino", "profit_factor", "max_drawdown", "trade_count")


def _get(d: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _overrides(job: Path) -> list[str]:
    p = job / ".hydra" / "overrides.yaml"
    if not p.is_file():
        return []
    import yaml

    data = yaml.safe_load(p.read_text()) or []
    return [str(x) for x in data]


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders: direct children with a .hydra folder or a metrics.json."""
    out = [p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / "metrics.json").is_file())]

    def key(p: Path) -> tuple:
        return (0, int(p.name), "") if p.name.isdigit() else (1, 0, p.name)

    return sorted(out, key=key)


def collect(sweep_dir: str | Path, metric: str | None = None) -> list[dict[str, Any]]:
    """One row per job; ``score`` is the ranking value (see module doc)."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for job in job_dirs(sweep_dir):
        ov = _overrides(job)
        row: dict[str, Any] = {"job": job.name, "overrides": " ".join(ov), "run_dir": str(job)}
        for o in ov:
            if "=" in o:
                k, v = o.split("=", 1)
                row[f"override.{k.lstrip('+~')}"] = v
        mpath = job / "metrics.json"
        if not mpath.is_file():
            row.update(status="failed", score=None, score_source=None)
            rows.append(row)
            continue
        m = json.loads(mpath.read_text())
        opt = m.get("optimize") if isinstance(m.get("optimize"), dict) else None
        if metric:
            score, source = _num(_get(m, metric)), metric
            direction = "minimize" if metric.split(".")[-1] in MINIMIZE else "maximize"
        elif opt is not None and opt.get("oos_objective") is not None:
            score, source = _num(opt.get("oos_objective")), f"oos.{opt.get('objective')}"
            direction = opt.get("direction", "maximize")
        else:
            score, source = _num(_get(m, FALLBACK_METRIC)), FALLBACK_METRIC
            direction = "maximize"
        row.update(status="ok", score=score, score_source=source, direction=direction,
                   synthetic=bool(m.get("synthetic", False)))
        if opt is not None:
            row.update(objective=opt.get("objective"), is_objective=_num(opt.get("is_objective")),
                       oos_objective=_num(opt.get("oos_objective")), degradation_pct=_num(opt.get("degradation_pct")),
                       dsr=_num(opt.get("dsr")), trials=opt.get("n_trials"))
            for k in SHOWN:
                row[f"oos.{k}"] = _num(_get(opt, f"oos.{k}"))
        bt = m.get("backtest") if isinstance(m.get("backtest"), dict) else {}
        for k in SHOWN:
            row[f"backtest.{k}"] = _num(bt.get(k))
        if m.get("params"):
            row["params"] = json.dumps(m["params"], sort_keys=True)
        rows.append(row)
    return rows


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first; jobs scored on different metrics are ranked within their metric
    group (groups in order of their best job), failed jobs last."""

    def signed(r: dict) -> float:
        s = r.get("score")
        if s is None:
            return -math.inf
        return s if r.get("direction", "maximize") == "maximize" else -s

    ok = [r for r in rows if r.get("status") == "ok"]
    groups: dict[str, list[dict]] = {}
    for r in ok:
        groups.setdefault(str(r.get("score_source")), []).append(r)
    ordered = []
    # OOS-scored jobs first: they are the honest ones.
    for src in sorted(groups, key=lambda s: (not s.startswith("oos."), s)):
        ordered += sorted(groups[src], key=signed, reverse=True)
    ordered += [r for r in rows if r.get("status") != "ok"]
    for i, r in enumerate(ordered, 1):
        r["rank"] = i
    return ordered


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    first = ["rank", "job", "score", "score_source", "overrides", "status"]
    rest = list(dict.fromkeys(k for r in rows for k in r if k not in first))
    return first + rest


def write(sweep_dir: str | Path, metric: str | None = None, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write leaderboard.csv / .json / .html into the sweep folder (or ``out_dir``)."""
    import csv

    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = rank(collect(sweep_dir, metric))
    cols = _columns(rows)
    paths = {"csv": out / "leaderboard.csv", "json": out / "leaderboard.json", "html": out / "leaderboard.html"}
    with paths["csv"].open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in cols})
    paths["json"].write_text(json.dumps({"sweep_dir": str(sweep_dir), "metric": metric, "jobs": rows}, indent=2,
                                        default=str))
    paths["html"].write_text(_html(rows, cols, sweep_dir))
    log.info("leaderboard written", jobs=len(rows), path=str(paths["csv"]))
    return paths


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def _html(rows: list[dict[str, Any]], cols: list[str], sweep_dir: Path) -> str:
    shown = [c for c in cols if c not in ("run_dir",)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = []
    for r in rows:
        cls = ' class="failed"' if r.get("status") != "ok" else ""
        cells = "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in shown)
        body.append(f"<tr{cls}>{cells}</tr>")
    synthetic = any(r.get("synthetic") for r in rows)
    note = "<p><b>SYNTHETIC DATA</b> in at least one job: not market results.</p>" if synthetic else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>aio leaderboard</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}}th{{background:#eee}}
tr.failed td{{color:#a00}}</style></head>
<body><h2>Leaderboard: {html.escape(str(sweep_dir))}</h2>{note}
<p>Ranked by the out-of-sample objective of each job's walk-forward search (score_source oos.*);
jobs without a search are ranked after them by {html.escape(FALLBACK_METRIC)} (in-sample: treat with care).</p>
<table><tr>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""


try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover
    _Callback = object  # type: ignore[assignment,misc]


class LeaderboardCallback(_Callback):  # type: ignore[misc]
    """Hydra callback: writes the leaderboard when a multirun ends."""

    def __init__(self, metric: str | None = None) -> None:
        self.metric = metric

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            sweep_dir = Path(config.hydra.sweep.dir)
            if sweep_dir.is_dir():
                paths = write(sweep_dir, self.metric)
                print(f"leaderboard: {paths['html']}", flush=True)
        except Exception as exc:  # a report must not turn a finished sweep into a failure
            log.warning("leaderboard not written", reason=str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aio.report.leaderboard", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", help="a Hydra multirun folder (outputs/multirun/...)")
    ap.add_argument("--metric", default=None,
                    help="dotted metrics.json key to rank by, e.g. backtest.sharpe (default: OOS objective)")
    ap.add_argument("--out", default=None, help="folder for the files (default: the sweep folder)")
    args = ap.parse_args(argv)
    d = Path(args.sweep_dir)
    if not d.is_dir():
        print(f"error: {d} is not a folder; pass the multirun folder (outputs/multirun/<time>_<name>)")
        return 2
    paths = write(d, args.metric, args.out)
    rows = json.loads(paths["json"].read_text())["jobs"]
    for r in rows[:10]:
        print(f"{r['rank']:>3}  job {r['job']:>4}  {_fmt(r.get('score')):>12}  {r.get('score_source') or r.get('status')}"
              f"  {r.get('overrides', '')}")
    print(f"leaderboard: {paths['csv']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
