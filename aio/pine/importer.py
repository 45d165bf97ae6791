"""Pine v6 strategy -> aio strategy: ``task=import_pine`` (the inverse of :mod:`aio.pine.builder`).

pynescript parses the script in its tool venv (:mod:`aio.pine.pine_ast`), the subset
with an aio counterpart is translated (:mod:`aio.pine.pine_ast_translate`) and the rest
refused with the line, the column and the construct named (``request.security``, loops,
arrays, ``varip`` and ``:=`` state, ``?:``, user functions that are more than one
expression...). The result is a strategy YAML (``strategies/<name>.yaml`` in the run) and
a row of the strategy library with source ``pine_import``. See docs/pine_import.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aio.config import param
from aio.pine.pine_ast import PineImportError, char_col, parse_files
from aio.pine.pine_ast_translate import Translator, slug

__all__ = ["ImportResult", "PineImportConfig", "PineImportError", "add_to_library", "import_files", "import_pine",
           "stage_import_pine", "translate"]

SOURCE = "pine_import"


@dataclass
class PineImportConfig:
    """The ``pine`` config group (conf/pine/default.yaml)."""

    path: str | None = param(None, help="the Pine v6 strategy script to import (task=import_pine)")
    name: str | None = param(None, help="the aio strategy name (default: the file name, as an identifier)")


@dataclass
class ImportResult:
    """One imported script: the strategy section (as YAML would hold it) and what to know about it."""

    name: str
    section: dict[str, Any]
    file: str
    sha256: str
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # strategy() settings found in the script

    @property
    def spec(self):
        from aio.strategy import load_spec

        return load_spec(self.section)

    def yaml(self) -> str:
        import yaml

        head = [f"# Imported from TradingView Pine: {Path(self.file).name} (sha256 {self.sha256[:16]}) by "
                f"`task=import_pine`; source {SOURCE}."]
        if self.settings:
            head.append("# The script's strategy() settings (aio's backtest config decides these; match them with "
                        "backtest.*): " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        head += [f"# NOTE: {n}" for n in self.notes]
        return "\n".join(head) + "\n" + yaml.safe_dump(self.section, sort_keys=False, allow_unicode=True, width=110)


def translate(text: str, parsed: dict, file: str, name: str | None = None) -> ImportResult:
    """Turn one parsed script (``pine_parse.py --ast`` output) into an :class:`ImportResult`."""
    if not parsed["ok"]:
        line, col = parsed.get("error_line"), parsed.get("error_col")
        src = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
        c = char_col(src, col or 0) if line else None
        raise PineImportError(f"{file}:{line}:{c}: the script does not parse as Pine: {parsed['error']}"
                              + (f"\n  {src}\n  {' ' * ((c or 1) - 1)}^" if src else ""), line, c, "syntax")
    tr = Translator(text, file, parsed.get("version"))
    tr.run(parsed["ast"])
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    name = name or slug(Path(file).stem)
    origin = f"{SOURCE} of {Path(file).name} (TradingView title \"{tr.title}\", sha256 {digest[:16]})"
    sec = tr.section(name, origin)
    if not sec["params"]:
        tr.notes.append("the script has no inputs, so a search has nothing to tune (write the numbers you want "
                        "searched as input.int(...)/input.float(...))")
    res = ImportResult(name=name, section=sec, file=str(file), sha256=digest, notes=tr.notes, settings=tr.settings)
    try:
        res.spec  # noqa: B018 - validates; a failure here is our bug or an unsupported combination
    except Exception as exc:
        raise PineImportError(f"{file}: the translated strategy does not validate: {exc}", None, None,
                              "translation") from exc
    return res


def import_files(paths: list[str | Path], names: list[str | None] | None = None,
                 venv: Path | None = None) -> list[ImportResult]:
    """Import several scripts with one parser process (its first parse costs seconds)."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise PineImportError(f"pine.path={str(p)!r}: no such file (give the path of a .pine script)",
                                  None, None, "pine.path")
    parsed = parse_files(paths, venv)
    names = names or [None] * len(paths)
    return [translate(p.read_text(encoding="utf-8"), d, str(p), n) for p, d, n in zip(paths, parsed, names)]


def import_pine(path: str | Path, name: str | None = None, venv: Path | None = None) -> ImportResult:
    return import_files([path], [name], venv)[0]


# -- the task -------------------------------------------------------------------------------


def stage_import_pine(run: Any) -> None:
    """``task=import_pine pine.path=FILE``: the strategy YAML into ``strategies/<name>.yaml`` of the run."""
    import structlog

    from aio.appconfig import plugin_config, section
    from aio.config import build
    from aio.errors import ConfigError

    log = structlog.get_logger(__name__)
    cfg = build(PineImportConfig, section(run.cfg, "pine"), "pine")
    if not cfg.path:
        raise ConfigError("task=import_pine needs the script: pine.path=my_strategy.pine (a Pine v6 strategy file)")
    res = import_pine(cfg.path, cfg.name)
    out = run.artifact(f"strategies/{res.name}.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(res.yaml())
    run.strategy = res.spec
    run.params = dict(run.strategy.params)
    run.metrics["pine_import"] = {
        "name": res.name, "file": str(Path(cfg.path).resolve()), "sha256": res.sha256, "source": SOURCE,
        "yaml": str(out), "rules": [r["id"] for r in res.section["rules"]], "params": res.section["params"],
        "notes": res.notes, "strategy_settings": res.settings,
        "library": add_to_library(res, plugin_config("store", run.cfg)[1], run.run_dir),
    }
    log.info("pine imported", name=res.name, rules=len(res.section["rules"]), notes=len(res.notes), yaml=str(out))


def add_to_library(res: ImportResult, store_cfg: Any, run_dir: str | Path | None = None) -> dict[str, Any]:
    """The imported strategy into the strategy library (the pattern library's ``strategies`` table).

    Idempotent: the row's id is a hash of name, definition and parameters, so importing the
    same script again rewrites the same row. ``metrics.source`` is ``pine_import``.
    """
    from aio.store import PatternLibrary
    from aio.store.records import StrategyRecord

    lib = PatternLibrary.from_config(store_cfg, run_dir)
    definition = {k: v for k, v in res.section.items() if k != "params"}
    rec = StrategyRecord(
        name=res.name, definition=definition, params=dict(res.section["params"]), kind="rules",
        metrics={"source": SOURCE, SOURCE: {"file": Path(res.file).name, "sha256": res.sha256,
                                            "origin": res.section["pine"]["origin"], "notes": res.notes,
                                            "strategy_settings": res.settings}},
    )
    (sid,) = lib.add_strategy(rec)
    return {"added": True, "strategy_id": sid, "library": str(lib.path), "table": "strategies", "source": SOURCE}
