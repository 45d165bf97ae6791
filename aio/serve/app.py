"""task=serve: a run's model over HTTP with LitServe.

    python -m aio task=serve query.run_dir=outputs/runs/<run> serve.port=8000

Endpoints (OpenAPI description at ``/openapi.json``, interactive at ``/docs``):

* ``POST /predict``  ``{"bars": [bar, ...]}`` -> ``{"p_down", "p_flat", "p_up", "exp_return", "ts_init", ...}``
  for the window's last bar; requests are batched into one forward pass
  (``serve.max_batch_size``, ``serve.batch_timeout``).
* ``POST /similar``  ``{"bars": [...], "k": 10, "same_symbol": true}`` -> the nearest patterns of the
  library whose outcome was known before the window's last bar closed (time-safe).
* ``POST /analyze``  ``{"ts": "2024-03-12T14:00"}`` -> the run's VLM answer (JSON) for its chart at that
  time; 404 when the run has no VLM.
* ``GET /health``    200 once the model is loaded.

A bar is ``{"ts_event", "ts_init", "open", "high", "low", "close", "volume", "spread_mean"}``
(times int ns UTC). Bad requests get a 4xx whose ``detail`` says what is wrong.
"""

# no `from __future__ import annotations`: FastAPI reads the request models from the real annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from aio.config import param

log = structlog.get_logger(__name__)


@dataclass
class ServeConfig:
    host: str = param("127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    port: int = param(8000, ge=1, le=65535)
    max_batch_size: int = param(64, ge=1, help="/predict requests batched into one model call")
    batch_timeout: float = param(0.005, ge=0, help="seconds to wait for a /predict batch to fill")
    workers: int = param(1, ge=1, help="LitServe workers per device")
    timeout: float = param(30.0, gt=0, help="request timeout, seconds")


MIN_BARS_ENV = "AIO_SERVE_MIN_BARS"  # set by build_server; LitServe's spawned API servers inherit it


def _min_bars_now() -> int:
    import os

    return int(os.environ.get(MIN_BARS_ENV, "1"))


try:  # request bodies as pydantic models: FastAPI checks each request (a 422 with the reason)
    # before it reaches a batch, so one bad request never fails its neighbours
    from pydantic import BaseModel, Field, field_validator

    class Bar(BaseModel):
        ts_event: int
        ts_init: int
        open: float = Field(gt=0)
        high: float = Field(gt=0)
        low: float = Field(gt=0)
        close: float = Field(gt=0)
        volume: float = 0.0
        ticks: int = 0
        spread_mean: float | None = None

    class Window(BaseModel):
        bars: list[Bar] = Field(description="consecutive closed bars, oldest first (at least the model's chart "
                                            "window and indicator warm-up); the answer is for the last one")

        @field_validator("bars")
        @classmethod
        def _enough(cls, v: list[Bar]) -> list[Bar]:
            need = _min_bars_now()
            if len(v) < need:
                raise ValueError(f"the window has {len(v)} bars; the model needs at least {need} "
                                 "(chart window and indicator warm-up)")
            if len(v) > 100_000:
                raise ValueError(f"the window has {len(v)} bars; at most 100000 are accepted")
            for a, b in zip(v, v[1:]):
                if b.ts_init <= a.ts_init:
                    raise ValueError(f"bars are not in increasing ts_init order at ts_init={b.ts_init}")
            for b in v:
                if not b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high:
                    raise ValueError(f"bar at ts_init={b.ts_init} has open/close outside low..high")
            return v

    class SimilarQuery(Window):
        k: int = Field(10, ge=1, le=1000)
        same_symbol: bool = True

    class AnalyzeQuery(BaseModel):
        ts: str = Field(description="UTC time; the run's last decision bar known then is analysed")
except ImportError:  # pragma: no cover - pydantic comes with litserve/fastapi
    pass


def _frame(req: Any):
    from aio.serve.model import bars_from_json

    return bars_from_json([b.model_dump() for b in req.bars])


def _http(code: int, text: str):
    from fastapi import HTTPException

    return HTTPException(code, text)


try:
    import litserve as ls
except ImportError:  # pragma: no cover - litserve is a dependency of task=serve only
    ls = None

if ls is not None:

    class PredictAPI(ls.LitAPI):
        """/predict: batched; each window's last bar -> class probabilities."""

        def __init__(self, run_dir: str, **kw: Any) -> None:
            super().__init__(**kw)
            self.run_dir = run_dir

        def setup(self, device: str) -> None:
            import torch

            from aio.serve.model import RunModel

            torch.set_num_threads(1)
            self.model = RunModel.load(self.run_dir)

        def decode_request(self, request: Window) -> Any:
            return _frame(request)

        def batch(self, frames: list) -> list:
            return frames

        def predict(self, frames: list) -> list:
            from aio.serve.model import BadRequest

            try:
                return self.model.predict(list(frames))
            except BadRequest as exc:
                raise _http(422, str(exc)) from None

        def unbatch(self, out: list) -> list:
            return out

        def encode_response(self, output: dict) -> dict:
            return output

    class SimilarAPI(ls.LitAPI):
        """/similar: nearest library patterns whose outcome closed before the window's last bar."""

        def __init__(self, run_dir: str, library: str | None, **kw: Any) -> None:
            super().__init__(**kw)
            self.run_dir, self.library = run_dir, library

        def setup(self, device: str) -> None:
            from aio.serve.model import RunModel
            from aio.store import PatternLibrary

            self.model = RunModel.load(self.run_dir)
            self.lib = PatternLibrary(self.library or _library_path(Path(self.run_dir)))

        def decode_request(self, request: SimilarQuery) -> Any:
            return request.k, request.same_symbol, _frame(request)

        def predict(self, x: Any) -> dict:
            import math

            from aio.serve.model import BadRequest

            k, same, frame = x
            try:
                emb = self.model.embed([frame])[0]
            except BadRequest as exc:
                raise _http(422, str(exc)) from None
            ts = int(frame.get_column("ts_init")[-1])
            flt: dict[str, Any] = {"model_id": self.model.model_id}
            if same:
                flt.update(symbol=self.model.symbol, timeframe=self.model.timeframe)
            res = self.lib.search(emb, k, flt, ts)  # ts_before: outcomes known before the query bar only
            nb = res.neighbors
            keep = [c for c in ("pattern_id", "ts_init", "label_end_ts", "symbol", "timeframe", "label", "fwd_return",
                                "regime", "run_id", "_distance") if c in nb.columns]
            stats = {k2: (None if isinstance(v, float) and math.isnan(v) else v) for k2, v in res.stats.__dict__.items()}
            return {"query_ts_init": ts, "neighbors": nb.select(keep).to_dicts(), "stats": stats}

        def encode_response(self, output: dict) -> dict:
            return output

    class AnalyzeAPI(ls.LitAPI):
        """/analyze: the run's VLM answer for its chart at a time (404 without a VLM)."""

        def __init__(self, run_dir: str, **kw: Any) -> None:
            super().__init__(**kw)
            self.run_dir = run_dir

        def setup(self, device: str) -> None:
            from aio.serve.model import RunModel

            self.model = RunModel.load(self.run_dir)
            self.plugin = None
            if self.model.has_vlm:
                from omegaconf import OmegaConf

                from aio.appconfig import plugin_config

                factory, mcfg = plugin_config("model", OmegaConf.load(Path(self.run_dir) / "config.yaml"))
                self.plugin = factory(mcfg)

        def decode_request(self, request: AnalyzeQuery) -> Any:
            return request.ts

        def predict(self, ts: str) -> dict:
            if self.plugin is None:
                raise _http(404, f"run {Path(self.run_dir).name} has no VLM (model={self.model.kind}); /analyze "
                                 "answers for runs trained with a VLM (e.g. +experiment=eurusd_14d_vlm)")
            from aio.errors import AioError
            from aio.vlm.analyze import analyze_run_bar

            try:
                return analyze_run_bar(self.plugin, self.run_dir, ts)
            except AioError as exc:
                raise _http(422, str(exc)) from None

        def encode_response(self, output: dict) -> dict:
            return output


def build_server(run_dir: str | Path, cfg: ServeConfig, library: str | None = None):
    import os

    from aio.serve.model import RunModel

    run_dir = Path(run_dir).resolve()
    probe = RunModel.load(run_dir)  # fails here (ConfigError) rather than in a worker
    min_bars = _min_bars(run_dir, probe)
    os.environ[MIN_BARS_ENV] = str(min_bars)
    apis = [PredictAPI(str(run_dir), max_batch_size=cfg.max_batch_size, batch_timeout=cfg.batch_timeout,
                       api_path="/predict"),
            SimilarAPI(str(run_dir), library, api_path="/similar"), AnalyzeAPI(str(run_dir), api_path="/analyze")]
    return ls.LitServer(apis, accelerator="cpu", workers_per_device=cfg.workers, timeout=cfg.timeout,
                        model_metadata={"run": run_dir.name, "model": probe.kind, "model_id": probe.model_id,
                                        "symbol": probe.symbol, "min_bars": min_bars})


def _min_bars(run_dir: Path, model: Any) -> int:
    """The first decision bar of the run's dataset + 1: chart window and feature warm-up."""
    import polars as pl

    p = run_dir / "predictions.parquet"
    if p.is_file():
        return int(pl.read_parquet(p, columns=["bar_index"])["bar_index"].min()) + 1
    return int(model.renderer.bars)


def _library_path(run_dir: Path) -> str:
    import json

    m = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    path = ((m.get("model") or {}).get("patterns") or {}).get("path")
    if not path:
        from aio.errors import ConfigError

        raise ConfigError(f"run {run_dir} stored no patterns; pass serve.library or store.path")
    return path


def stage_serve(run: Any) -> None:
    from aio.appconfig import section
    from aio.config import build
    from aio.errors import ConfigError

    cfg = build(ServeConfig, section(run.cfg, "serve"), "serve")
    q = section(run.cfg, "query")
    if not q.get("run_dir"):
        raise ConfigError("task=serve needs query.run_dir=<a run folder trained with a model>")
    store = section(run.cfg, "store")
    library = store.get("path") if store.get("path") else None
    server = build_server(q["run_dir"], cfg, library)
    log.info("serving", url=f"http://{cfg.host}:{cfg.port}", run=q["run_dir"], openapi="/openapi.json")
    # API server in a thread of this process: a forked one would inherit LanceDB's runtime (fork-unsafe)
    server.run(host=cfg.host, port=cfg.port, generate_client_file=False, log_level="info",
               api_server_worker_type="thread")
