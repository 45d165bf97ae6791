"""HTML pages aio writes: one shell, offline plotly, sortable tables, the synthetic banner.

Every page loads plotly.js from a file next to it (written once per folder), never
from a CDN: the pages open on an offline machine and in a sandboxed browser.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from aio.report import fmt

PLOTLY_JS = "plotly.min.js"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;padding:0 1.2em 2em;max-width:1880px;
 color:#222}
h1{font-size:1.5em;margin:.6em 0 .2em}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:.8em 0 .3em}
.banner{position:sticky;top:0;z-index:10;background:#fde7e7;border:2px solid #c00;color:#900;padding:.5em .8em;
 font-weight:bold;margin:0 0 .6em}
.sample{display:inline-block;padding:.1em .5em;border-radius:3px;font-size:.8em;font-weight:bold;vertical-align:middle}
.oos{background:#dff0d8;color:#2b5a2b}.is{background:#fcf3cf;color:#7a5b00}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:.4em .8em;margin:.4em 0}
.ruin{background:#fde7e7;border-left:4px solid #c00;padding:.4em .8em;margin:.4em 0;font-weight:bold}
.cards{display:flex;flex-wrap:wrap;gap:.5em;margin:.5em 0}
.card{border:1px solid #ddd;border-radius:4px;padding:.35em .7em;min-width:8.5em}
.card .k{font-size:.75em;color:#666}.card .v{font-size:1.15em;font-weight:600}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:13px}
td,th{border:1px solid #d6d6d6;padding:2px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;position:sticky;top:0}
table.sortable th{cursor:pointer}table.sortable th:after{content:" \\2195";color:#aaa}
td.l,th.l{text-align:left}
table.fit{table-layout:fixed;width:100%}table.fit td,table.fit th{white-space:normal;overflow-wrap:anywhere}
.scroll{max-height:560px;overflow:auto;border:1px solid #eee;display:inline-block;max-width:100%}
.pos{color:#1a7f37}.neg{color:#c62828}
.links a{margin-right:1.2em}
.note{color:#555;font-size:.9em}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th, i){
    th.addEventListener('click', function(){
      var body = t.tBodies[0], rows = Array.from(body.rows), asc = th.dataset.dir !== 'asc';
      t.querySelectorAll('th').forEach(function(h){ delete h.dataset.dir; });
      th.dataset.dir = asc ? 'asc' : 'desc';
      rows.sort(function(a, b){
        var x = a.cells[i].dataset.sort, y = b.cells[i].dataset.sort;
        var fx = parseFloat(x), fy = parseFloat(y);
        var c = (!isNaN(fx) && !isNaN(fy)) ? fx - fy : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def write_plotly_js(folder: Path) -> Path:
    """plotly.min.js in ``folder``, written once (the bundled copy of the installed plotly)."""
    from plotly.offline import get_plotlyjs

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLOTLY_JS
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
        tmp.replace(path)  # a reader never sees half a file
    return path


def banner(synthetic: Any) -> str:
    if not synthetic:
        return ""
    detail = "" if synthetic is True else f" ({html.escape(str(synthetic))})"
    return (f"<div class='banner' id='synthetic-banner'>SYNTHETIC DATA{detail}: every number on this page comes from "
            "simulated prices, not from a market.</div>")


def document(title: str, body: Iterable[str], plotly_src: str | None = None, synthetic: Any = False) -> str:
    head = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><style>{CSS}</style>")
    if plotly_src:
        head += f"<script src='{html.escape(plotly_src, quote=True)}'></script>"
    return (head + "</head><body>" + banner(synthetic) + "\n".join(body)
            + f"<script>{SORT_JS}</script></body></html>")


def figure(fig: Any, div_id: str, post_script: str | None = None) -> str:
    """A figure's div and script (plotly.js comes from the page's head)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, post_script=post_script,
                       config={"displaylogo": False, "responsive": True,
                               "toImageButtonOptions": {"format": "png", "scale": 2}})


def cell(key: str, v: Any, left: bool = False, unit_key: str | None = None) -> str:
    key = unit_key or key
    text = fmt.value(key, v)
    cls = []
    if left:
        cls.append("l")
    signed = fmt.kind(key) == "money" or any(w in key for w in ("return", "profit", "pnl"))
    if signed and "drawdown" not in key and isinstance(v, (int, float)) and not isinstance(v, bool):
        cls.append("pos" if v > 0 else "neg" if v < 0 else "")
    c = f" class='{' '.join(x for x in cls if x)}'" if any(cls) else ""
    return f"<td{c} data-sort='{fmt.sort_key(v)}'>{html.escape(text)}</td>"


def kv_table(rows: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    keys = [k for k in (keys or rows.keys()) if k in rows and not isinstance(rows[k], (dict, list))]
    body = "".join(f"<tr><th class='l'>{html.escape(fmt.label(k))}</th>{cell(k, rows[k])}</tr>" for k in keys)
    return f"<table>{body}</table>"


def table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str], *, headers: Mapping[str, str] | None = None,
          sortable: bool = True, fit: bool = False, left: Sequence[str] = (), links: Mapping[str, str] | None = None,
          table_id: str | None = None, unit_keys: Mapping[str, str] | None = None) -> str:
    """Rows as a table; ``links`` maps a column to the row key holding its href;
    ``unit_keys`` maps a column to the row key naming the metric whose unit it has."""
    headers = headers or {}
    cls = " ".join(x for x in ("sortable" if sortable else "", "fit" if fit else "") if x)
    tid = f" id='{table_id}'" if table_id else ""
    head = "".join(f"<th class='{'l' if c in left else ''}'>{html.escape(headers.get(c, fmt.label(c)))}</th>"
                   for c in cols)
    out = []
    for r in rows:
        cells = []
        for c in cols:
            uk = str(r.get(unit_keys[c]) or c) if unit_keys and c in unit_keys else None
            td = cell(c, r.get(c), c in left, uk)
            if links and c in links and r.get(links[c]):
                href = html.escape(str(r[links[c]]), quote=True)
                inner = html.escape(fmt.value(uk or c, r.get(c)))
                td = td.replace(f">{inner}</td>", f"><a href='{href}'>{inner}</a></td>")
            cells.append(td)
        out.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='{cls}'{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(out)}</tbody></table>"


def cards(metrics: Mapping[str, Any], keys: Sequence[str]) -> str:
    items = []
    for k in keys:
        if k in metrics:
            items.append(f"<div class='card'><div class='k'>{html.escape(fmt.label(k))}</div>"
                         f"<div class='v'>{html.escape(fmt.value(k, metrics[k]))}</div></div>")
    return "<div class='cards'>" + "".join(items) + "</div>"
