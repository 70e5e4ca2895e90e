"""The one scorer (UAR, accuracy, log loss) against scikit-learn on random data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.metrics import log_loss as sklearn_log_loss

from emotune.features import accuracy, balanced_accuracy, log_loss, score, scores


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Codes of ``k`` classes, one of which never occurs in ``y_true``, predictions and probabilities."""
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 60)), int(rng.integers(3, 9))
    missing = int(rng.integers(0, k))
    y_true = rng.choice([c for c in range(k) if c != missing], n)
    proba = rng.dirichlet(np.ones(k), n)
    # Predictions may hold the missing class and classes outside 0..k-1 (scikit-learn counts them as errors).
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k + 2, n))
    return y_true, y_pred, proba, k


@pytest.mark.parametrize("seed", range(40))
def test_scores_equal_scikit_learn(seed: int) -> None:
    y_true, y_pred, proba, k = _random_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        uar = balanced_accuracy_score(y_true, y_pred)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(uar, abs=1e-12)
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert score("uar", y_true, y_pred) == balanced_accuracy(y_true, y_pred)
    assert score("accuracy", y_true, y_pred) == accuracy(y_true, y_pred)
    assert scores(y_true, y_pred) == {
        "accuracy": accuracy(y_true, y_pred),
        "uar": balanced_accuracy(y_true, y_pred),
    }
    expected = sklearn_log_loss(y_true, proba, labels=np.arange(k))
    assert log_loss(y_true, proba) == pytest.approx(expected, rel=1e-9)


def test_uar_weighs_every_class_present_equally() -> None:
    y_true = np.array([0, 0, 0, 0, 1])
    y_pred = np.array([0, 0, 0, 0, 0])  # class 1 always missed
    assert balanced_accuracy(y_true, y_pred) == 0.5
    assert accuracy(y_true, y_pred) == 0.8


def test_log_loss_clips_a_confident_miss() -> None:
    proba = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert log_loss(np.array([1, 0]), proba) == pytest.approx((-np.log(1e-15) - np.log(0.5)) / 2)
    assert log_loss(np.array([1, 0]), proba, eps=1e-12) == pytest.approx((-np.log(1e-12) - np.log(0.5)) / 2)


def test_score_refuses_mismatched_input() -> None:
    with pytest.raises(ValueError, match="must be equal"):
        score("uar", np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="non-empty"):
        score("accuracy", np.array([], dtype=int), np.array([], dtype=int))
