"""The one scorer: UAR (balanced accuracy), accuracy and log loss of integer class codes.

Every room scores with these: the search objective (fold and out-of-fold scores), the torch
classifier (per-epoch validation UAR, early-stopping loss), the voters (selection, tie-breaks) and the
ensemble's tables. They equal scikit-learn's ``balanced_accuracy_score``, ``accuracy_score`` and
``log_loss`` (tested), without their input validation, which costs about 1 ms a call: an objective
scores every fold twice, a greedy voter thousands of candidate blends.
"""

from __future__ import annotations

import numpy as np

METRICS: tuple[str, ...] = ("uar", "accuracy")


def _codes(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(
            f"score: y_true {y_true.shape} and y_pred {y_pred.shape} must be equal, non-empty 1-D"
        )
    return y_true, y_pred


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted average recall (UAR): the recall of each class present in ``y_true``, averaged.

    A predicted class absent from ``y_true`` (a code the fold never saw as true, or -1) only counts
    as an error, as in scikit-learn, and is not warned about.
    """
    y_true, y_pred = _codes(y_true, y_pred)
    classes, codes = np.unique(y_true, return_inverse=True)
    hit = y_true == y_pred
    recall = np.bincount(codes, weights=hit, minlength=len(classes)) / np.bincount(
        codes, minlength=len(classes)
    )
    return float(np.mean(recall))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of rows whose prediction equals the true label (codes or labels of any comparable type)."""
    y_true, y_pred = _codes(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def score(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The named metric of predictions: ``uar`` (:func:`balanced_accuracy`) or ``accuracy``.

    Any name but ``uar`` means accuracy (studies store only the two names of :data:`METRICS`).
    """
    if metric == "uar":
        return balanced_accuracy(y_true, y_pred)
    return accuracy(y_true, y_pred)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``{"accuracy": ..., "uar": ...}`` of the same predictions (the ensemble's table columns)."""
    return {"accuracy": accuracy(y_true, y_pred), "uar": balanced_accuracy(y_true, y_pred)}


def log_loss(y_true: np.ndarray, proba: np.ndarray, *, eps: float = 1e-15) -> float:
    """Mean negative log probability of the true class; probabilities are clipped below at ``eps``.

    Args:
        y_true: Integer class codes, ``(n,)``: column indices into ``proba``.
        proba: ``(n, n_classes)`` probabilities, rows summing to one (not renormalised here).
        eps: Floor of a probability before the log, so a confident miss costs ``-log(eps)``, not inf.
    """
    y_true = np.asarray(y_true)
    p = np.asarray(proba)[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.clip(p, eps, None))))
