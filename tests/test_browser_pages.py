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


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("pages")
    os.environ["AIO_REPORT_PNG"] = "0"  # the PNGs have their own test (test_report.py); here the pages count
    sweep = root / "sweep"
    for i, overrides in enumerate((SEARCH, MANY_TRADES)):
        job = sweep / str(i)
        run_pipeline(job, overrides)
        (job / ".hydra").mkdir(exist_ok=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    from aio.report import leaderboard

    board = leaderboard.write(sweep)["html"]
    os.environ.pop("AIO_REPORT_PNG")
    paths = [sweep / "0" / "report.html", sweep / "0" / "optimize" / "history.html",
             sweep / "0" / "optimize" / "oos_equity.html", sweep / "1" / "report.html", board]
    return {p: r for p, r in zip(paths, check_pages(paths, root / "shots", evals={"zoom": ZOOM}))}


def test_every_page_renders_offline_without_errors(pages):
    assert len(pages) == 5
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
