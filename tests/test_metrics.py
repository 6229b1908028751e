"""Evaluation metrics against scikit-learn's reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from appliance.errors import InvalidInput
from appliance.scoring.metrics import binary_metrics, log_loss, roc_auc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(2000) < 0.1
    score = np.round(rng.random(2000) + y * 0.3, 2)  # rounding makes many ties
    assert roc_auc(y, score) == pytest.approx(sk.roc_auc_score(y, score), abs=1e-12)


def test_a_nan_or_infinite_score_is_refused_not_ranked_highest():
    y = np.array([0, 1, 0, 1])
    for bad in (np.nan, np.inf):
        with pytest.raises(InvalidInput, match="1 of 4 scores are NaN or infinite"):
            roc_auc(y, np.array([0.1, 0.9, bad, 0.8]))


def test_auc_of_one_class_is_nan():
    assert np.isnan(roc_auc(np.zeros(10), np.linspace(0, 1, 10)))


def test_threshold_metrics_and_log_loss_match_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random(5000) < 0.2).astype(int)
    p = np.clip(rng.random(5000) * 0.6 + y * 0.3, 0, 1)
    m = binary_metrics(y, p, threshold=0.5)
    predicted = p >= 0.5
    assert m["precision"] == pytest.approx(sk.precision_score(y, predicted))
    assert m["recall"] == pytest.approx(sk.recall_score(y, predicted))
    assert m["f1"] == pytest.approx(sk.f1_score(y, predicted))
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p), rel=1e-9)
    assert log_loss(np.array([1, 0]), np.array([1.0, 0.0])) < 1e-12  # clipped, not inf


def test_no_positive_predictions_gives_zero_not_an_error():
    m = binary_metrics(np.array([0, 1, 0]), np.array([0.1, 0.2, 0.3]), threshold=0.9)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
