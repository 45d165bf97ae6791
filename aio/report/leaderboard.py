"""One table ranking the jobs of a Hydra multirun.

Each job folder (``<sweep dir>/<job number>/``) holds ``metrics.json`` and
``.hydra/overrides.yaml``; the table ranks jobs by their headline
(:mod:`aio.report.headline`): with a search, the search objective on the stitched
walk-forward out-of-sample windows; without one, the full-period net profit (ranked
after the searched jobs), or any dotted metrics key given as ``--metric``. Jobs whose
manifest says ``status: failed`` (or that left no metrics) are not ranked; they are
listed below the table. Written as
``leaderboard.csv``, ``.json`` and ``.html`` (sortable, each job linked to its
``report.html``, plotly.js next to it) in the sweep folder, automatically at
the end of a multirun (:class:`LeaderboardCallback`, configured in
``conf/hydra/default.yaml``) or by hand::

    python -m aio.report.leaderboard outputs/multirun/2024-05-01_12-00-00_adhoc
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import structlog

from aio.report import fmt, page
from aio.report.headline import FULL, OOS
from aio.report.headline import read as headline
from aio.report.page import PLOTLY_JS, write_plotly_js

log = structlog.get_logger(__name__)

FALLBACK_METRIC = "backtest.net_profit"
MINIMIZE = {"max_drawdown", "max_drawdown_pct"}
SHOWN = ("net_profit", "return_pct", "sharpe", "sortino", "profit_factor", "max_drawdown", "max_drawdown_pct",
         "win_rate_pct", "win_rate", "trade_count")


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


def _failed(job: Path) -> str | None:
    """Why a job is not ranked, or None: its manifest says failed, or it left no metrics."""
    man = job / "manifest.json"
    if man.is_file():
        try:
            m = json.loads(man.read_text())
        except ValueError:
            return "manifest.json unreadable"
        if isinstance(m, dict) and m.get("status") == "failed":
            return str(m.get("error") or m.get("reason") or "status: failed")
    if not (job / "metrics.json").is_file():
        return "no metrics.json (the job stopped before the end)"
    return None


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
        why = _failed(job)
        if why is not None:
            row.update(status="failed", score=None, score_source=None, reason=why)
            rows.append(row)
            continue
        m = json.loads((job / "metrics.json").read_text())
        h = headline(m)
        hm = h.get("metrics") or {}
        opt = m.get("optimize") if isinstance(m.get("optimize"), dict) else None
        if metric:
            score, source = _num(_get(m, metric)), metric
            direction = "minimize" if metric.split(".")[-1] in MINIMIZE else "maximize"
        elif h.get("sample") == OOS and opt is not None and opt.get("objective"):
            obj = opt["objective"]
            score = _num(hm.get(obj)) if hm.get(obj) is not None else _num(opt.get("oos_objective"))
            source, direction = f"oos.{obj}", opt.get("direction", "maximize")
        else:
            score, source, direction = _num(hm.get("net_profit")), f"{h.get('sample', FULL)}.net_profit", "maximize"
        row.update(status="ok", score=score, score_source=source, direction=direction, sample=h.get("sample"),
                   synthetic=bool(m.get("synthetic", False)), warning_count=len(h.get("warnings") or []),
                   ruin=bool(h.get("ruin")))
        if (job / "report.html").is_file():
            row["report"] = str(job / "report.html")
        for k in SHOWN:
            row[f"headline.{k}"] = _num(hm.get(k))
        if opt is not None:
            row.update(objective=opt.get("objective"), is_objective=_num(opt.get("is_objective")),
                       oos_objective=_num(opt.get("oos_objective")), degradation_pct=_num(opt.get("degradation_pct")),
                       dsr=_num(opt.get("dsr")), trials=opt.get("n_trials"))
        bt = m.get("backtest") if isinstance(m.get("backtest"), dict) else {}
        for k in ("net_profit", "sharpe", "trade_count"):
            row[f"backtest.{k}"] = _num(bt.get(k))
        if m.get("params"):
            row["params"] = json.dumps(m["params"], sort_keys=True)
        rows.append(row)
    return rows


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first; jobs scored on different metrics are ranked within their metric
    group (out-of-sample groups first, then in order of the group's name); failed
    jobs come last, unranked."""

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
    for i, r in enumerate(ordered, 1):
        r["rank"] = i
    failed = [r for r in rows if r.get("status") != "ok"]
    for r in failed:
        r["rank"] = None
    return ordered + failed


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
    write_plotly_js(out)
    paths["html"].write_text(_html(rows, sweep_dir, out), encoding="utf-8")
    log.info("leaderboard written", jobs=len(rows), path=str(paths["csv"]))
    return paths


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return fmt.ratio(v)
    return str(v)


HTML_COLS = ["rank", "job", "score", "score_source", "headline.net_profit", "headline.return_pct", "headline.sharpe",
             "headline.sortino", "headline.max_drawdown_pct", "headline.profit_factor", "headline.win_rate_pct", "headline.win_rate",
             "headline.trade_count", "warning_count", "ruin", "degradation_pct", "dsr", "backtest.net_profit",
             "backtest.sharpe", "overrides", "params"]
HEADERS = {"score_source": "ranked by", "headline.net_profit": "net profit (acct ccy)", "headline.return_pct": "return",
           "headline.sharpe": "Sharpe", "headline.sortino": "Sortino", "headline.max_drawdown_pct": "max drawdown",
           "headline.profit_factor": "profit factor", "headline.win_rate": "win rate", "headline.win_rate_pct": "win rate", "headline.trade_count": "trades",
           "degradation_pct": "IS->OOS degradation", "dsr": "deflated Sharpe (prob.)",
           "backtest.net_profit": "IS full-period net profit", "backtest.sharpe": "IS full-period Sharpe"}


def _html(rows: list[dict[str, Any]], sweep_dir: Path, out: Path) -> str:
    ranked = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") != "ok"]
    for r in ranked:
        if r.get("report"):
            r["_href"] = os.path.relpath(r["report"], out)
    shown = [c for c in HTML_COLS if any(r.get(c) is not None for r in ranked)]
    # the score reads in its own metric's unit
    table_rows = [{**r, "score": r.get("score")} for r in ranked]
    body = [f"<h1>Leaderboard</h1><p class='note'>{html.escape(str(sweep_dir))}: {len(ranked)} ranked jobs"
            f"{f', {len(failed)} failed' if failed else ''}.</p>",
            "<p>Ranked by each job's headline: the search objective on the stitched walk-forward out-of-sample "
            "windows (ranked by oos.*), then jobs without a search by their full-period net profit (in sample: "
            "treat with care). Click a header to sort; click a job to open its report.</p>"]
    tbl = page.table(table_rows, shown, headers=HEADERS, left=("job", "score_source", "overrides", "params"),
                     links={"job": "_href"}, table_id="leaderboard", unit_keys={"score": "score_source"})
    body.append(f"<div class='scroll'>{tbl}</div>")
    fig = _scatter(ranked)
    if fig is not None:
        body.append(page.figure(fig, "fig-leaderboard"))
    if failed:
        body.append("<h2>Failed jobs (not ranked)</h2>" + page.table(failed, ["job", "overrides", "reason"],
                                                                    left=("job", "overrides", "reason"),
                                                                    sortable=False))
    synthetic = "in at least one job" if any(r.get("synthetic") for r in ranked) else False
    return page.document("aio leaderboard", body, plotly_src=PLOTLY_JS, synthetic=synthetic)


def _scatter(rows: list[dict[str, Any]]) -> Any:
    pts = [r for r in rows if r.get("headline.return_pct") is not None and r.get("headline.max_drawdown_pct") is not None]
    if not pts:
        return None
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(
        x=[-abs(r["headline.max_drawdown_pct"]) for r in pts], y=[r["headline.return_pct"] for r in pts],
        mode="markers+text", text=[f"job {r['job']}" for r in pts], textposition="top center",
        marker={"size": 11, "color": ["#1a9850" if r["headline.return_pct"] > 0 else "#d73027" for r in pts]},
        customdata=[r.get("overrides", "") for r in pts],
        hovertemplate="%{text}<br>return %{y:.2f} %<br>max drawdown %{x:.2f} %<br>%{customdata}<extra></extra>"))
    fig.update_xaxes(title_text="headline max drawdown (%)", ticksuffix=" %")
    fig.update_yaxes(title_text="headline return (%)", ticksuffix=" %")
    fig.update_layout(template="plotly_white", height=420, title="headline return against drawdown, one dot per job",
                      margin={"l": 70, "r": 20, "t": 60, "b": 60})
    return fig


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
        print(f"{r['rank'] or '-':>3}  job {r['job']:>4}  {_fmt(r.get('score')):>12}  {r.get('score_source') or r.get('status')}"
              f"  {r.get('overrides', '')}")
    print(f"leaderboard: {paths['csv']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
