"""Every kind of page aio writes, opened in headless Debian Chromium with networking off.

Each page must draw every plotly figure (its SVG is in the DOM), raise no JavaScript
error, ask for nothing off the machine, fit a 1920-px screen, and its screenshot must
not be blank. Screenshots are kept in the test's tmp folder to look at.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _chromium import check_pages  # noqa: E402
from _report_runs import MANY_TRADES, SEARCH, run_pipeline  # noqa: E402

pytestmark = pytest.mark.slow

# Zooms the price chart of a many-trade report into four hours: the entry/exit markers,
# hidden while more than 500 trades are in view, must appear.
ZOOM = """(async () => {
  const gd = document.getElementById('fig-price'); if (!gd) return null;
  const idx = gd.data.map((t, i) => [t.name, i]).filter(x => /entry|exit/.test(x[0])).map(x => x[1]);
  const before = idx.map(i => gd.data[i].visible !== false);
  await Plotly.relayout(gd, {'xaxis.range': ['2024-03-05 08:00', '2024-03-05 12:00']});
  await new Promise(r => setTimeout(r, 300));
  const zoomed = idx.map(i => gd.data[i].visible !== false);
  await Plotly.relayout(gd, {'xaxis.autorange': true});
  await new Promise(r => setTimeout(r, 300));
  return {before: before, zoomed: zoomed, after: idx.map(i => gd.data[i].visible !== false)};
})()"""


def with_model_and_discovery(run, path: Path) -> Path:
    """The search run's report as it reads when a model ran and discovery ran: those
    stages are other helpers' and slow, so their outputs are written here in the shapes
    they write (predictions.parquet, metrics["model"], metrics["discover"])."""
    import numpy as np
    import polars as pl

    from aio.report.run_report import write_run_report

    rng = np.random.default_rng(3)
    p = rng.dirichlet([2, 1, 2], size=800)
    y = np.array([rng.choice(3, p=row) for row in p])  # calibrated by construction
    pred = run.run_dir / "predictions.parquet"
    pl.DataFrame({"p_down": p[:, 0], "p_flat": p[:, 1], "p_up": p[:, 2], "label": y}).write_parquet(pred)
    run.artifacts["predictions"] = str(pred)
    run.metrics["model"] = {"model": "chartnet", "oos": {
        "model": {"accuracy": 0.41, "log_loss": 1.05, "ece": 0.03},
        "majority": {"accuracy": 0.38, "log_loss": 1.09, "ece": 0.0},
        "logreg": {"accuracy": 0.39, "log_loss": 1.08, "ece": 0.02}}}
    run.metrics["discover"] = {"funnel": [{"stage": "generated", "count": 500}, {"stage": "screened", "count": 120},
                                          {"stage": "walk-forward", "count": 12}, {"stage": "kept", "count": 3}],
                               "best": [{"name": "cand_017", "rules": "crossover(ema(9), ema(21))", "oos_sharpe": 0.8},
                                        {"name": "cand_101", "rules": "rsi(14) < 30", "oos_sharpe": 0.4}],
                               "seconds": 42.0}
    return write_run_report(run, path, pngs=False)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("pages")
    os.environ["AIO_REPORT_PNG"] = "0"  # the PNGs have their own test (test_report.py); here the pages count
    sweep = root / "sweep"
    runs = []
    for i, overrides in enumerate((SEARCH, MANY_TRADES)):
        job = sweep / str(i)
        runs.append(run_pipeline(job, overrides))
        (job / ".hydra").mkdir(exist_ok=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    from aio.report import leaderboard

    board = leaderboard.write(sweep)["html"]
    model_page = with_model_and_discovery(runs[0], root / "model" / "report.html")
    os.environ.pop("AIO_REPORT_PNG")
    paths = [sweep / "0" / "report.html", sweep / "0" / "optimize" / "history.html",
             sweep / "0" / "optimize" / "oos_equity.html", sweep / "1" / "report.html", board, model_page]
    return {p: r for p, r in zip(paths, check_pages(paths, root / "shots", evals={"zoom": ZOOM}))}


def test_every_page_renders_offline_without_errors(pages):
    assert len(pages) == 6
    for path, r in pages.items():
        assert r.figures >= 1, path
        assert r.rendered == r.figures, (path, r.rendered, r.figures)
        assert r.errors == [], (path, r.errors)
        assert r.remote_requests == [], (path, r.remote_requests)
        assert r.scroll_width <= 1920, (path, r.scroll_width)
        assert r.pixel_std > 10, (path, r.pixel_std, r.screenshot)  # a blank page is ~0
        assert "SYNTHETIC DATA" in r.text, path


def test_report_figures_and_their_order(pages):
    report = next(r for p, r in pages.items() if p.parent.name == "0" and p.name == "report.html")
    assert report.figures == 6  # equity, price, returns, importances, heatmap, in-sample equity
    text = report.text
    assert text.index("Headline") < text.index("Equity against buy-and-hold") < text.index("Price and trades") \
        < text.index("Period returns") < text.index("Trades (") < text.index("Parameter search") \
        < text.index("Walk-forward folds") < text.index("Full-period backtest") < text.rindex("manifest.json")


def test_model_and_discovery_sections(pages):
    r = next(r for p, r in pages.items() if p.parent.name == "model")
    assert r.figures == 8  # the six of the search report + reliability + funnel
    t = r.text
    assert t.index("Walk-forward folds") < t.index("The model, out of sample, next to its baselines") \
        < t.index("Discovery") < t.index("Full-period backtest")
    assert "cand_017" in t and "crossover(ema(9), ema(21))" in t and "majority" in t


def test_many_trades_show_markers_only_when_zoomed_in(pages):
    many = next(r for p, r in pages.items() if p.parent.name == "1" and p.name == "report.html")
    z = many.evals["zoom"]
    assert z["before"] and not any(z["before"]) and all(z["zoomed"]) and not any(z["after"])
    few = next(r for p, r in pages.items() if p.parent.name == "0" and p.name == "report.html")
    assert all(few.evals["zoom"]["before"])  # under 500 trades the markers are always there


def test_a_page_that_needs_the_network_fails_the_check(tmp_path):
    page = tmp_path / "cdn.html"
    page.write_text("<html><head><script src='https://cdn.plot.ly/plotly-2.35.2.min.js'></script></head><body>"
                    "<div id='f' class='plotly-graph-div'></div><script>Plotly.newPlot('f', [{y: [1, 2]}])</script>"
                    "</body></html>")
    (r,) = check_pages([page], tmp_path / "shots", timeout=5)
    assert r.remote_requests == ["https://cdn.plot.ly/plotly-2.35.2.min.js"]
    assert any("Plotly is not defined" in e for e in r.errors) and r.rendered == 0
    assert r.pixel_std < 1  # and its screenshot is blank
