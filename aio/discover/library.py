"""The strategy library: every discovery candidate, accepted or not, with its lineage.

Rows live in the LanceDB ``strategies`` table of the pattern library (aio.store),
written with its idempotent upsert (key: hash of name, definition and parameters), so
re-running the same discovery on the same data rewrites the same rows. A row's
``metrics_json`` holds the lineage under ``discover``: proposer, teacher model id, data
window, canonical rule text, every gate's figure, ledger size and holdout result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from aio.errors import ConfigError

KIND = "rules"


def open_library(store_cfg: Any, run_dir: str | Path | None = None) -> Any:
    from aio.store import PatternLibrary

    return PatternLibrary.from_config(store_cfg, run_dir)


def strategy_definition(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec mapping without its parameter values (those are the record's params)."""
    d = {k: v for k, v in dict(spec).items() if k != "params"}
    return json.loads(json.dumps(d, default=str))


def to_record(c: Any, lineage: Mapping[str, Any]) -> Any:
    from aio.store.records import StrategyRecord

    params = {**c.spec.get("params", {}), **(c.params or {})}
    fig = {
        "proposer": c.proposer, "status": c.status, "accepted": c.accepted, "reason": c.reason,
        "candidate_id": c.id, "rule": c.text, "screen": c.screen, "oos": c.oos, "gates": c.gates,
        "passed": c.passed, "holdout": c.holdout, "trials": c.trials,
        "meta": {k: v for k, v in c.meta.items() if k not in ("pbo_params",)},
        **dict(lineage),
    }
    return StrategyRecord(name=c.id or c.spec.get("name", "candidate"), definition=strategy_definition(c.spec),
                          params=_plain(params), metrics={"discover": _plain(fig)}, kind=KIND,
                          symbol=lineage.get("symbol"), timeframe=lineage.get("timeframe"),
                          model_id=lineage.get("teacher_model_id"))


def write_candidates(lib: Any, cands: list[Any], lineage: Mapping[str, Any]) -> list[str]:
    recs = [to_record(c, lineage) for c in cands if c.id]
    return lib.add_strategy(recs) if recs else []


def _plain(o: Any) -> Any:
    from aio.pipeline import dumps

    return json.loads(dumps(o))


def rows(lib: Any) -> list[dict[str, Any]]:
    """Every strategy row with its lineage decoded (``discover`` is None for non-discovery rows)."""
    frame = lib.strategies()
    out = []
    for r in frame.iter_rows(named=True):
        m = json.loads(r.get("metrics_json") or "{}")
        out.append({**r, "discover": m.get("discover")})
    return out


def stored_specs(lib: Any, only_accepted: bool = False) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for r in rows(lib):
        d = r["discover"]
        if d is None or (only_accepted and not d.get("accepted")):
            continue
        yield r["strategy_id"], spec_of(r), {"stored_proposer": d.get("proposer")}


def spec_of(row: Mapping[str, Any]) -> dict[str, Any]:
    spec = dict(json.loads(row["definition_json"]))
    spec["params"] = json.loads(row["params_json"])
    spec["name"] = spec.get("name") or row["name"]
    return spec


def find(lib: Any, ident: str) -> dict[str, Any]:
    """A row by strategy id, candidate id (name) or a unique prefix of either."""
    hits = [r for r in rows(lib) if ident in (r["strategy_id"], r["name"])]
    if not hits:
        hits = [r for r in rows(lib) if r["strategy_id"].startswith(ident) or r["name"].startswith(ident)]
    if len(hits) != 1:
        known = ", ".join(sorted({r["name"] for r in rows(lib)})[:10]) or "(empty)"
        what = "no strategy" if not hits else f"{len(hits)} strategies"
        raise ConfigError(f"strategy.from=library:{ident}: {what} match in the strategy library at {lib.path} "
                          f"(ids like: {known}); list them with task=strategies")
    return hits[0]


def resolve_from(section: Mapping[str, Any] | None, store: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A strategy section with ``from: file.yaml | library:<id>`` replaced by that strategy;
    the section's ``params`` override values of parameters the loaded strategy declares
    (the rest of the section, e.g. the default strategy's own keys, is dropped)."""
    section = dict(section or {})
    ref = section.pop("from", None)
    if not ref:
        return section
    store_cfg = None
    if store and store.get("name") in (None, "lancedb"):
        from aio.config import build
        from aio.store.config import LanceDBStoreConfig

        store_cfg = build(LanceDBStoreConfig, store, "store")
    base = load_from(str(ref), store_cfg)
    own = dict(base.get("params") or {})
    given = {k: v for k, v in (section.get("params") or {}).items() if k in own}
    out = {**base, "params": {**own, **given}}
    out.pop("from", None)
    return out


def load_from(ref: str, store_cfg: Any = None) -> dict[str, Any]:
    """``path/to/strategy.yaml`` or ``library:<id>`` -> a strategy mapping."""
    import yaml

    if ref.startswith("library:"):
        if store_cfg is None:
            from aio.store.config import LanceDBStoreConfig

            store_cfg = LanceDBStoreConfig()
        return spec_of(find(open_library(store_cfg), ref.split(":", 1)[1]))
    path = Path(ref).expanduser()
    if not path.is_file():
        raise ConfigError(f"strategy.from={ref!r}: no such file (give a strategy YAML, e.g. "
                          f"discover/strategies/<id>.yaml of a run, or library:<id>)")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict):
        raise ConfigError(f"strategy.from={ref!r}: the file is not a strategy mapping (name, params, rules...)")
    return spec
