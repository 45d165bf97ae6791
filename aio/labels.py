"""Synthetic data is labelled in every file a run writes.

One pass over the run folder at the end of the run (and of any task that writes
files), so every writer - today's and a plugin's - is covered by the same rule:
CSV gets a ``synthetic`` column, Parquet key-value metadata, JSON a field, HTML a
banner, Pine a comment (the exporter also puts " (SYNTHETIC)" in the title).
"""

from __future__ import annotations

import json
from pathlib import Path

NOTE = "SYNTHETIC DATA: results come from simulated ticks, not a market"
BANNER = ("<div class='aio-synthetic' style='background:#fee;border:2px solid #c00;padding:.6em;font-weight:bold'>"
          "SYNTHETIC DATA: every number on this page comes from simulated ticks, not from a market.</div>")
PARQUET_KEY = b"aio.synthetic"


def label_csv(path: Path, synthetic: bool) -> None:
    import polars as pl

    try:
        df = pl.read_csv(path, infer_schema_length=0)  # all text: the values round-trip unchanged
    except Exception:  # not a table we can read (e.g. empty): leave it, say nothing false
        return
    if "synthetic" in df.columns:
        return
    df.with_columns(pl.lit(str(synthetic).lower()).alias("synthetic")).write_csv(path)


def label_parquet(path: Path, synthetic: bool, note: str = NOTE) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    if meta.get(PARQUET_KEY) == str(synthetic).lower().encode():
        return
    meta[PARQUET_KEY] = str(synthetic).lower().encode()
    if synthetic:
        meta[b"aio.note"] = note.encode()
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    tmp.replace(path)


def label_json(path: Path, synthetic: bool, note: str = NOTE) -> None:
    try:
        obj = json.loads(path.read_text())
    except (ValueError, OSError):
        return
    if isinstance(obj, dict) and "synthetic" not in obj:
        obj["synthetic"] = synthetic
        if synthetic:
            obj.setdefault("synthetic_note", note)
        path.write_text(json.dumps(obj, indent=2, default=str))


def label_html(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if "aio-synthetic" in text or "SYNTHETIC DATA" in text:
        return
    i = text.find("<body")
    j = text.find(">", i) + 1 if i >= 0 else 0
    path.write_text(text[:j] + BANNER + text[j:], encoding="utf-8")


def label_pine(path: Path, note: str = NOTE) -> None:
    text = path.read_text(encoding="utf-8")
    if note in text or ("SYNTHETIC" in text and note == NOTE):
        return
    lines = text.splitlines(keepends=True)
    at = 1 if lines and lines[0].startswith("//@version") else 0
    lines.insert(at, "// " + note.replace("\n", " ") + "\n")
    path.write_text("".join(lines), encoding="utf-8")


def synthetic_note(meta: dict | None) -> str:
    """The label, naming the planted edge when the data carries one."""
    plant = (meta or {}).get("plant")
    if not plant:
        return NOTE
    desc = plant.get("description") or plant.get("when") or str({k: v for k, v in plant.items() if k != "event_ts_init"})
    desc = str(desc)
    return f"{NOTE}; {desc if desc.startswith('planted edge') else 'planted edge: ' + desc}"


def label_run_folder(run_dir: Path, synthetic: bool, note: str = NOTE) -> list[str]:
    """Label every file below ``run_dir``; returns the files touched (relative)."""
    touched = []
    if not synthetic:
        return touched
    for p in sorted(Path(run_dir).rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(run_dir).parts):
            continue
        suf = p.suffix.lower()
        if suf == ".csv":
            label_csv(p, True)
        elif suf == ".parquet":
            label_parquet(p, True)
        elif suf == ".json":
            label_json(p, True, note)
        elif suf in (".html", ".htm"):
            label_html(p)
        elif suf == ".pine":
            label_pine(p, note)
        else:
            continue
        touched.append(str(p.relative_to(run_dir)))
    return touched
