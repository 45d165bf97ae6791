"""Evaluation pieces of the models: scores against sklearn/scipy, temperature scaling,
the walk-forward plan, baselines. Pure numpy, no training."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score
from sklearn.metrics import log_loss as sk_log_loss

from aio.errors import ConfigError
from aio.models import baselines
from aio.models.calibration import fit_temperature, nll, softmax
from aio.models.metrics import accuracy, ece, log_loss, scores, spearman
from aio.models.walkforward import check_no_overlap, plan_folds


def _random_proba(rng, n, k=3):
    p = rng.dirichlet(np.ones(k), size=n)
    return p


def test_accuracy_and_log_loss_match_sklearn():
    rng = np.random.default_rng(0)
    p = _random_proba(rng, 500)
    y = rng.integers(0, 3, 500)
    assert accuracy(p, y) == pytest.approx(accuracy_score(y, p.argmax(1)))
    assert log_loss(p, y) == pytest.approx(sk_log_loss(y, p, labels=[0, 1, 2]), rel=1e-12)
    # a certain and wrong prediction is clipped, as sklearn does
    hard = np.eye(3)[[0, 1, 2]]
    assert log_loss(hard, np.array([1, 1, 2])) == pytest.approx(sk_log_loss([1, 1, 2], hard, labels=[0, 1, 2]), rel=1e-6)


def test_spearman_matches_scipy_with_ties_and_nans():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 20, 300).astype(float)  # many ties
    y = x + rng.normal(0, 5, 300)
    x[::17] = np.nan
    ok = np.isfinite(x)
    assert spearman(x, y) == pytest.approx(spearmanr(x[ok], y[ok]).statistic, rel=1e-12)
    assert np.isnan(spearman(np.ones(10), np.arange(10.0)))  # a constant forecast has no IC


def test_ece_matches_calibration_curve():
    rng = np.random.default_rng(2)
    p = _random_proba(rng, 4000)
    y = np.array([rng.choice(3, p=row) for row in p])  # calibrated by construction
    conf, hit = p.max(1), (p.argmax(1) == y).astype(int)
    bins = 10
    prob_true, prob_pred = calibration_curve(hit, conf, n_bins=bins, strategy="uniform")
    edges = np.linspace(0, 1, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], conf, side="right"), minlength=bins)
    counts = counts[counts > 0]
    reference = float((counts / len(conf) * np.abs(prob_true - prob_pred)).sum())
    assert ece(p, y, bins) == pytest.approx(reference, rel=1e-9)
    # overconfident forecasts have a larger ECE than the calibrated ones
    sharp = softmax(np.log(p) * 4)
    assert ece(sharp, y, bins) > ece(p, y, bins) + 0.05


def test_temperature_scaling_recovers_known_temperature():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1.5, (20000, 3))
    y = np.array([rng.choice(3, p=row) for row in softmax(z)])
    t = fit_temperature(3.0 * z, y)  # logits 3x too sharp
    assert t == pytest.approx(3.0, rel=0.06)
    assert nll(3.0 * z, y, t) < nll(3.0 * z, y, 1.0)
    # the optimum: the log loss does not fall either side of T
    assert nll(3.0 * z, y, t) <= min(nll(3.0 * z, y, t * 1.02), nll(3.0 * z, y, t / 1.02))
    # scaling never changes the predicted class
    assert (softmax(3.0 * z, t).argmax(1) == z.argmax(1)).all()
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0


@pytest.mark.parametrize("scheme", ["expanding", "rolling"])
def test_walk_forward_folds_embargo_and_order(scheme):
    stride, embargo, horizon = 5, 60, 60
    bar_index = 200 + stride * np.arange(2000)
    folds = plan_folds(bar_index, 4, scheme, embargo, 0.2)
    assert [f.index for f in folds] == [0, 1, 2, 3]
    check_no_overlap(folds, bar_index, horizon)
    covered = np.concatenate([f.predict.rows() for f in folds])
    assert np.array_equal(covered, np.arange(folds[0].predict.start, 2000))  # blocks 1..K, each once, in order
    for f in folds:
        first_pred = bar_index[f.predict.start]
        assert bar_index[f.val.stop - 1] <= first_pred - embargo - 1
        assert bar_index[f.fit.stop - 1] <= bar_index[f.val.start] - embargo - 1
        assert f.fit.start == 0 if scheme == "expanding" else True
    if scheme == "rolling":
        assert folds[2].fit.start > 0
    with pytest.raises(AssertionError):
        check_no_overlap(folds, bar_index, horizon + 100)  # a longer horizon would leak: the guard says so


def test_walk_forward_too_little_data_names_the_fix():
    with pytest.raises(ConfigError, match="model.folds"):
        plan_folds(np.arange(40), 8, "expanding", 10, 0.2)


def test_baselines_majority_and_logreg():
    rng = np.random.default_rng(4)
    n = 3000
    x = rng.normal(size=(n, 4))
    logits = np.stack([-2 * x[:, 0], np.zeros(n), 2 * x[:, 0]], axis=1)
    y = np.array([rng.choice(3, p=row) for row in softmax(logits)])
    r = x[:, 0] + rng.normal(0, 1, n)
    tr, te = slice(0, 2000), slice(2000, n)
    maj = baselines.majority(y[tr], 1000)
    assert np.allclose(maj[0], np.bincount(y[tr], minlength=3) / 2000)
    p, ret = baselines.logreg(x[tr], y[tr], r[tr], x[te])
    s_lr = scores(p, y[te], ret, r[te])
    s_maj = scores(maj, y[te], None, r[te])
    assert s_lr["log_loss"] < s_maj["log_loss"] - 0.1  # the features carry signal: logreg must use it
    assert s_lr["ic"] > 0.3 and np.isnan(s_maj["ic"])


def test_model_and_trainer_configs_name_the_bad_key():
    from aio.config import build
    from aio.models.config import ChartNetConfig, KnnAnalogsConfig
    from aio.train.config import trainer_config

    with pytest.raises(ConfigError, match=r"model\.channels"):
        build(ChartNetConfig, {"image_size": 16, "channels": [8, 8, 8, 8, 8]}, "model")
    with pytest.raises(ConfigError, match=r"model\.folds=0 is out of range"):
        build(ChartNetConfig, {"folds": 0}, "model")
    with pytest.raises(ConfigError, match=r"Did you mean model\.backend"):
        build(KnnAnalogsConfig, {"backnd": "memory"}, "model")
    with pytest.raises(ConfigError, match=r"trainer\.precision='fp8' is not allowed"):
        trainer_config({"precision": "fp8"})
    with pytest.raises(ConfigError, match="min_epochs"):
        trainer_config({"min_epochs": 5, "max_epochs": 2})
