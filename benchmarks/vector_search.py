"""Similarity search of the pattern library vs exact numpy search, same data, same process.

    python benchmarks/vector_search.py            # 1,000,000 x 128-d (a few minutes)
    python benchmarks/vector_search.py --n 100000 # quick run

Data (``clustered_embeddings``), shaped like a trained encoder's output rather than iid
noise: a mixture of ``--clusters`` (300) anisotropic Gaussian clusters living in a
``--intrinsic`` (32) dimensional subspace of the 128-d space, plus small isotropic noise
in all 128 dimensions, then L2-normalised like a model's embedding head:

* cluster weights ~ Dirichlet(1) (uneven sizes, as market regimes are);
* centres ~ N(0, 0.25^2 I_r), close enough that neighbouring clusters overlap; each
  cluster has its own random rotation and a decaying spectrum of standard deviations
  (0.5 .. 0.02, geometric, times a per-cluster scale in [0.5, 1]);
* the r-dim points are mapped into 128-d by a fixed random orthonormal basis, noise
  N(0, 0.03^2 I_128) is added, and each row is scaled to unit length.

Queries are fresh draws from the same mixture (not rows of the table), as a new bar is.

aio side: ``PatternLibrary.add_patterns`` (idempotent upserts), ``ensure_index`` (the
store's default index config: IVF-PQ + refine, see aio/store/config.py), then
``PatternLibrary.search(q, k=10)`` per query (results + outcome stats, as the knn model
calls it). Peer: numpy brute force (X @ q, argpartition, sort) on the same vectors.
``recall_at_10`` = |ANN top-10 ∩ exact top-10| / 10, averaged over the queries; the
store's own brute-force path (``exact=True``) is checked against numpy as well.
Last line: one JSON object; ``ratio`` = exact p50 / indexed p50.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aio.store import LanceDBStoreConfig, PatternLibrary  # noqa: E402
from aio.store.library import _sub_vectors  # noqa: E402
from aio.store.records import PATTERN_FIELDS, VECTOR  # noqa: E402

STEP_NS = 60_000_000_000  # one pattern per minute bar: ts_init = row * STEP_NS


class Mixture:
    """The clustered embedding generator described in the module docstring."""

    def __init__(
        self, dim: int = 128, clusters: int = 300, intrinsic: int = 32, noise: float = 0.03,
        centre_scale: float = 0.25, seed: int = 7,
    ):
        rng = np.random.default_rng(seed)
        self.dim, self.clusters, self.r, self.noise = dim, clusters, intrinsic, noise
        self.weights = rng.dirichlet(np.ones(clusters))
        self.centres = rng.normal(scale=centre_scale, size=(clusters, intrinsic))
        spectrum = np.geomspace(0.5, 0.02, intrinsic)
        scale = rng.uniform(0.5, 1.0, size=clusters)
        # Per-cluster covariance factor: rotation @ diag(spectrum * scale).
        rots = np.linalg.qr(rng.normal(size=(clusters, intrinsic, intrinsic)))[0]
        self.factors = rots * (spectrum[None, None, :] * scale[:, None, None])
        self.basis = np.linalg.qr(rng.normal(size=(dim, intrinsic)))[0]  # dim x r, orthonormal columns

    def sample(self, n: int, seed: int, chunk: int = 200_000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            comp = rng.choice(self.clusters, size=m, p=self.weights)
            z = rng.normal(size=(m, self.r))
            y = self.centres[comp] + np.einsum("nij,nj->ni", self.factors[comp], z)
            x = y @ self.basis.T + rng.normal(scale=self.noise, size=(m, self.dim))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[start : start + m] = x
        return out


def pattern_table(x: np.ndarray, seed: int = 3) -> pa.Table:
    """Pattern rows around the vectors: 4 symbols, one timeframe, minute bars, 10-bar labels."""
    rng = np.random.default_rng(seed)
    n = len(x)
    ts = np.arange(n, dtype=np.int64) * STEP_NS
    fwd = rng.normal(scale=1e-3, size=n)
    label = np.where(fwd > 3e-4, 1, np.where(fwd < -3e-4, -1, 0)).astype(np.int8)
    symbols = np.array(["EURUSD", "GBPUSD", "USDJPY", "AUDUSD"])[np.arange(n) % 4]
    regimes = np.array(["trend", "range", "volatile"])[rng.integers(0, 3, n)]
    cols = {
        "model_id": pa.array(np.full(n, "bench-model")),
        "symbol": pa.array(symbols),
        "timeframe": pa.array(np.full(n, "1m")),
        "ts_init": pa.array(ts),
        "label_end_ts": pa.array(ts + 10 * STEP_NS),
        "horizon_bars": pa.array(np.full(n, 10, np.int32)),
        "regime": pa.array(regimes),
        "fwd_return": pa.array(fwd),
        "label": pa.array(label),
        VECTOR: pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]),
    }
    assert set(cols) - {VECTOR} <= {f.name for f in PATTERN_FIELDS}
    return pa.table(cols)


def exact_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Exact k nearest by cosine (= dot on unit vectors): the peer."""
    s = x @ q
    idx = np.argpartition(-s, k)[:k]
    return idx[np.argsort(-s[idx])]


def p50_ms(times: list[float]) -> float:
    return float(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--clusters", type=int, default=300)
    ap.add_argument("--intrinsic", type=int, default=32)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=100, help="unmeasured queries run first")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index-type", default=None, help="override store.index.type")
    ap.add_argument("--num-sub-vectors", type=int, default=None)
    ap.add_argument("--partition-size", type=int, default=None, help="override index.target_partition_size")
    ap.add_argument("--nprobes", type=int, default=None)
    ap.add_argument("--refine-factor", type=int, default=None)
    ap.add_argument("--ef", type=int, default=None)
    ap.add_argument("--sweep", action="store_true", help="also report recall/p50 over a grid of nprobes x refine")
    ap.add_argument("--path", default=None, help="library folder (default: a temp dir, removed at the end)")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing library at --path (skip write/build)")
    args = ap.parse_args()

    load0 = os.getloadavg()
    cfg = LanceDBStoreConfig()
    if args.index_type:
        cfg.index.type = args.index_type
    if args.num_sub_vectors:
        cfg.index.num_sub_vectors = args.num_sub_vectors
    if args.partition_size:
        cfg.index.target_partition_size = args.partition_size
    if args.nprobes:
        cfg.search.nprobes = args.nprobes
    if args.refine_factor:
        cfg.search.refine_factor = args.refine_factor
    if args.ef:
        cfg.search.ef = args.ef

    t = time.perf_counter()
    mix = Mixture(args.dim, args.clusters, args.intrinsic)
    x = mix.sample(args.n, seed=11)
    queries = mix.sample(args.queries, seed=12)
    warm = mix.sample(args.warmup, seed=13)
    gen_s = time.perf_counter() - t
    print(f"generated {args.n} x {args.dim} in {gen_s:.1f}s", file=sys.stderr)

    tmp = None
    path = Path(args.path) if args.path else Path(tmp := tempfile.mkdtemp(prefix="aio-vector-bench-"))
    try:
        lib = PatternLibrary(path, cfg)
        write_s = build_s = 0.0
        if not (args.reuse and lib.count_patterns() == args.n):
            t = time.perf_counter()
            lib.add_patterns(pattern_table(x), progress=True)
            write_s = time.perf_counter() - t
            print(f"wrote {args.n} patterns in {write_s:.1f}s", file=sys.stderr)
            t = time.perf_counter()
            status = lib.ensure_index(force=True)
            build_s = time.perf_counter() - t
            print(f"index {status.index_type} built in {build_s:.1f}s", file=sys.stderr)
        status = lib.index_status()

        k = args.k
        truth, exact_times = [], []
        for q in warm[:20]:
            exact_topk(x, q, k)  # warm-up
        for q in queries:
            t = time.perf_counter()
            idx = exact_topk(x, q, k)
            exact_times.append(time.perf_counter() - t)
            truth.append(set(idx.tolist()))

        t = time.perf_counter()
        lib.search(warm[0], k)
        first_ms = (time.perf_counter() - t) * 1e3  # opens the index, loads its centroids

        def run(**kw) -> tuple[float, float]:
            # A long-lived process (the knn model) has the index partitions it touches
            # cached; warm them with queries that are not measured.
            for q in warm:
                lib.search(q, k, **kw)
            times, hits = [], 0
            for q, tr in zip(queries, truth):
                t = time.perf_counter()
                res = lib.search(q, k, **kw)
                times.append(time.perf_counter() - t)
                got = (res.neighbors["ts_init"].to_numpy() // STEP_NS).tolist()
                hits += len(tr & set(got))
            return p50_ms(times), hits / (k * len(queries))

        ann_p50, recall = run()
        # Agreement of the two exact paths (the store's brute force vs numpy) on a few queries.
        nflat = min(20, len(queries))
        flat_times, flat_hits = [], 0
        for q, tr in zip(queries[:nflat], truth):
            t = time.perf_counter()
            res = lib.search(q, k, exact=True)
            flat_times.append(time.perf_counter() - t)
            flat_hits += len(tr & set((res.neighbors["ts_init"].to_numpy() // STEP_NS).tolist()))
        exact_agreement = flat_hits / (k * nflat)

        sweep = []
        if args.sweep:
            for nprobes in (4, 8, 16, 32):
                for rf in (0, 2, 5, 10):
                    p, r = run(nprobes=nprobes, refine_factor=rf)
                    sweep.append({"nprobes": nprobes, "refine_factor": rf, "p50_ms": round(p, 3), "recall_at_10": round(r, 4)})
                    print(json.dumps(sweep[-1]), file=sys.stderr)

        exact_p50 = p50_ms(exact_times)
        out = {
            "benchmark": "vector_search",
            "n": args.n,
            "dim": args.dim,
            "queries": len(queries),
            "k": k,
            "index_type": status.index_type,
            "index": {
                "type": cfg.index.type,
                "num_partitions": cfg.index.num_partitions or max(1, round(args.n / cfg.index.target_partition_size)),
                "num_sub_vectors": _sub_vectors(args.dim, cfg.index.num_sub_vectors),
                "nprobes": cfg.search.nprobes,
                "refine_factor": cfg.search.refine_factor,
                "ef": cfg.search.ef,
                "metric": cfg.metric,
            },
            "p50_ms": round(ann_p50, 3),
            "recall_at_10": round(recall, 4),
            "exact_p50_ms": round(exact_p50, 3),
            "first_query_ms": round(first_ms, 3),
            "store_exact_p50_ms": round(p50_ms(flat_times), 3),
            "exact_agreement": round(exact_agreement, 4),
            "ratio": round(exact_p50 / ann_p50, 3),
            "build_s": round(build_s, 1),
            "write_s": round(write_s, 1),
            "generate_s": round(gen_s, 1),
            "meets_target": bool(ann_p50 <= 10.0 and recall >= 0.95),
            "agree": bool(exact_agreement >= 0.99),
            "cpus": os.cpu_count(),
            "loadavg_start": [round(v, 2) for v in load0],
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
            "sweep": sweep,
        }
        print(json.dumps(out))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
