"""A write that dies half-way leaves the pattern table readable; re-running completes it.

Each ``write_batch_rows`` slice is one Lance transaction (one table version); a
reader only ever sees committed versions, whatever the writer was doing when it died.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from aio.store import LanceDBStoreConfig, PatternLibrary

REPO = Path(__file__).resolve().parent.parent

# Deterministic parts of a write, shared by the writer subprocess and the checks here.
PARTS_SRC = textwrap.dedent(
    """
    import numpy as np
    import pyarrow as pa

    ROWS, DIM, MIN = 20_000, 64, 60_000_000_000

    def part(i):
        rng = np.random.default_rng(i)
        x = rng.normal(size=(ROWS, DIM)).astype(np.float32)
        ts = (np.arange(ROWS, dtype=np.int64) + i * ROWS) * MIN
        return pa.table({
            "model_id": ["m"] * ROWS, "symbol": ["EURUSD"] * ROWS, "timeframe": ["1m"] * ROWS,
            "ts_init": ts, "label_end_ts": ts + 5 * MIN,
            "horizon_bars": pa.array([5] * ROWS, pa.int32()),
            "fwd_return": ts.astype(np.float64) / MIN,  # row i carries i: checks rows are whole
            "label": pa.array([1] * ROWS, pa.int8()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM),
        })
    """
)
ns: dict = {}
exec(PARTS_SRC, ns)
part, ROWS, MIN = ns["part"], ns["ROWS"], ns["MIN"]
N_PARTS = 40


def check_consistent(lib: PatternLibrary) -> int:
    """Every committed row is whole and unique; returns the row count."""
    lib.refresh()
    t = lib.table("patterns").to_arrow()
    n = t.num_rows
    ids = t["pattern_id"].to_pylist()
    assert len(set(ids)) == n
    ts = t["ts_init"].to_numpy()
    np.testing.assert_array_equal(t["fwd_return"].to_numpy(), ts / MIN)
    assert (t["label_end_ts"].to_numpy() == ts + 5 * MIN).all()
    # The table answers searches at this version.
    if n:
        q = t["vector"].combine_chunks().flatten().to_numpy()[:64]
        assert lib.search(q, 3, exact=True).neighbors["ts_init"][0] == ts[0]
    return n


def test_exception_mid_batched_write_keeps_committed_transactions(tmp_path: Path):
    cfg = LanceDBStoreConfig(write_batch_rows=7500)
    lib = PatternLibrary(tmp_path / "lib", cfg)

    def parts():
        yield part(0)
        yield part(1)
        raise RuntimeError("feature pipeline died")

    with pytest.raises(RuntimeError, match="pipeline died"):
        lib.add_patterns(parts())
    n = check_consistent(lib)
    assert n == 2 * ROWS  # both parts' transactions (7500 + 7500 + 5000 each) committed
    versions = lib.versions()
    res = lib.add_patterns([part(0), part(1), part(2)])  # the re-run
    assert (res.inserted, res.updated) == (ROWS, 2 * ROWS)
    assert check_consistent(lib) == 3 * ROWS
    assert len(lib.versions()) > len(versions)


def test_killed_writer_leaves_a_readable_table(tmp_path: Path):
    path = tmp_path / "lib"
    script = tmp_path / "writer.py"
    script.write_text(
        PARTS_SRC
        + textwrap.dedent(
            f"""
            import sys
            from aio.store import LanceDBStoreConfig, PatternLibrary

            def parts():
                for i in range({N_PARTS}):
                    print(i, flush=True)  # asked for part i: parts < i are committed
                    yield part(i)

            PatternLibrary({str(path)!r}, LanceDBStoreConfig(write_batch_rows={ROWS})).add_patterns(parts())
            print("done", flush=True)
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            if line in ("4", "done", ""):
                break
        assert line == "4", f"writer did not get going (last line {line!r}, rc {proc.poll()})"
        time.sleep(0.1)  # inside part 4's transaction, most likely
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    lib = PatternLibrary(path, LanceDBStoreConfig(write_batch_rows=ROWS))
    n = check_consistent(lib)
    assert n % ROWS == 0 and 4 * ROWS <= n < N_PARTS * ROWS
    # Re-running the whole write completes it without duplicates.
    k = n // ROWS + 2
    res = lib.add_patterns([part(i) for i in range(k)])
    assert (res.inserted, res.updated) == (k * ROWS - n, n)
    assert check_consistent(lib) == k * ROWS
