"""chartnet trained for real on a small synthetic dataset: reproducible on the CPU, and every
prediction comes from a model fitted on data that ended before the predicted bar."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _model_data import small_bars, small_dataset  # noqa: E402

from aio.models.base import ModelContext  # noqa: E402
from aio.models.chartnet import ChartNet  # noqa: E402
from aio.models.chartnet_model import ChartNetModel  # noqa: E402
from aio.models.config import ChartNetConfig  # noqa: E402
from aio.models.data import FoldDataModule, ImageStore, load_table  # noqa: E402
from aio.models.calibration import softmax  # noqa: E402
from aio.train.config import TrainerConfig  # noqa: E402

CFG = ChartNetConfig(image_size=32, channels=[8, 16], mlp_hidden=16, embedding_dim=16, folds=3)
TCFG = TrainerConfig(accelerator="cpu", devices=1, max_epochs=2, utilization_interval_s=0.2, log_every_n_steps=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("chartnet")
    bars = small_bars()
    info = small_dataset(root, bars)
    return root, bars, info


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    root, bars, info = data
    out = tmp_path_factory.mktemp("fit_a")
    return out, _fit(info.path, out, bars)


def _fit(path: Path, out: Path, bars, seed: int = 7):
    ctx = ModelContext(dataset_path=path, out_dir=out, seed=seed, trainer=TCFG, bars=bars)
    return ChartNetModel(CFG).fit(ctx)


def _scramble_labels_from(src: Path, dst: Path, row0: int) -> None:
    """A copy of the dataset whose labels (all horizons) are changed from row ``row0`` on."""
    import lancedb
    import pyarrow as pa

    shutil.copytree(src, dst)
    db = lancedb.connect(str(dst))
    t = db.open_table("rows").to_arrow().sort_by("row")
    n = t.num_rows
    for name in t.column_names:
        if name.startswith("dir_") or name.startswith("fwd_"):
            a = t.column(name).to_numpy().copy()
            if name.startswith("dir_"):
                a[row0:] = (a[row0:] + 1) % 3
            else:
                a[row0:] = -a[row0:] + 1.0
            t = t.set_column(t.column_names.index(name), name, pa.array(a, t.schema.field(name).type))
    db.create_table("rows", data=t, mode="overwrite")
    assert n == t.num_rows


def test_same_seed_same_weights_and_no_prediction_from_the_future(data, fitted, tmp_path):
    root, bars, info = data
    a_dir, a = fitted
    b = _fit(info.path, tmp_path / "b", bars)
    # 1. reproducible: identical weights, predictions and metrics
    for k in range(CFG.folds):
        wa = torch.load(a_dir / "weights" / f"fold_{k}.pt", weights_only=False)["state_dict"]
        wb = torch.load(tmp_path / "b" / "weights" / f"fold_{k}.pt", weights_only=False)["state_dict"]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[n], wb[n]) for n in wa)
    assert np.array_equal(a.proba, b.proba, equal_nan=True)
    assert a.metrics["oos"] == b.metrics["oos"] and a.model_id == b.model_id
    # 2. every prediction comes from a model whose labels all closed before the predicted bar
    ok = a.predicted
    first_block = int(a.metrics["fold_plan"][0]["predict"][0])
    assert not ok[:first_block].any() and ok[first_block:].all()
    assert (a.seen_until_bar[ok] < a.table.bar_index[ok]).all()
    assert np.allclose(a.proba[ok].sum(1), 1.0)
    # 3. changing the labels from block 2 on leaves the predictions of blocks 1 and 2 bit for bit
    #    (block 2's own labels included) and changes block 3: no label a model predicts reaches it
    row0 = int(a.metrics["fold_plan"][1]["predict"][0])
    _scramble_labels_from(info.path, tmp_path / "scrambled", row0)
    c = _fit(tmp_path / "scrambled", tmp_path / "c", bars)
    end2 = int(a.metrics["fold_plan"][1]["predict"][1])
    assert np.array_equal(a.proba[:end2], c.proba[:end2], equal_nan=True)
    assert np.array_equal(a.exp_return[:end2], c.exp_return[:end2], equal_nan=True)
    assert not np.allclose(a.proba[end2:], c.proba[end2:])
    # 4. a different seed gives different weights (the seed is what makes runs repeatable)
    d = _fit(info.path, tmp_path / "d", bars, seed=8)
    assert not np.allclose(a.proba[ok], d.proba[ok])


def test_saved_fold_model_reproduces_its_predictions_and_logs(data, fitted):
    root, bars, info = data
    m, r = fitted
    saved = torch.load(m / "weights" / "fold_1.pt", weights_only=False)
    net = ChartNet(saved["n_features"], CFG)
    net.load_state_dict(saved["state_dict"])
    net.eval()
    table = load_table(info.path, close=bars.frame.get_column("close").to_numpy())
    lo, hi = saved["fold"]["predict"]
    fit_lo, fit_hi = saved["fold"]["fit"]
    dm = FoldDataModule(table, ImageStore(info.path, table.meta, CFG.image_size), np.arange(fit_lo, fit_hi),
                        np.arange(0), np.arange(lo, hi), batch_size=64)
    batch = next(iter(dm.loader(np.arange(lo, hi), False)))
    with torch.no_grad():
        logits = net(batch["image"], batch["features"])["logits"].double().numpy()
    got = softmax(logits, saved["temperature"])
    assert np.allclose(got, r.proba[lo:lo + len(got)], atol=1e-6)
    assert saved["temperature"] == pytest.approx(float(net.temperature))
    # evaluation files: metrics next to baselines, per-fold table
    folds = pl.read_csv(m / "model_folds.csv")
    assert folds.height == CFG.folds
    for col in ("model_log_loss", "majority_log_loss", "logreg_log_loss", "model_ece", "model_ic", "temperature"):
        assert col in folds.columns
    oos = r.metrics["oos"]
    assert set(oos) == {"model", "majority", "logreg"} and oos["model"]["n"] == int(r.predicted.sum())
    # Lightning artefacts: checkpoint, CSV log with the LR monitor and utilisation columns
    assert (m / "checkpoints" / "fold_0" / "best.ckpt").is_file()
    log = pl.read_csv(m / "lightning_logs" / "fold_0" / "metrics.csv")
    assert "lr-AdamW" in log.columns and "util/cpu_pct_mean" in log.columns and "val_loss" in log.columns
    assert r.metrics["utilization"]["samples"] >= 1
    assert r.metrics["hardware"]["chosen"]["precision"] == "32-true"
    assert r.embeddings.shape == (len(table), CFG.embedding_dim) and np.isfinite(r.embeddings).all()


def test_lazy_images_equal_cached_ones(data):
    root, bars, info = data
    table = load_table(info.path)
    rows = np.array([0, 5, 17, len(table) - 1])
    cached = ImageStore(info.path, table.meta, 24, cache=True).get(rows)
    lazy = ImageStore(info.path, table.meta, 24, cache=False).get(rows)
    assert cached.dtype == torch.uint8 and cached.shape == (4, 3, 24, 24)
    assert torch.equal(cached, lazy)
