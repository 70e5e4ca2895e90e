"""Pieces the spaces share: the `classic` column layout, preprocessing, boosting reports, the deep spaces' hooks.

Pruners live in :mod:`emotune.spaces._pruners` (re-exported by :mod:`emotune.spaces`).

Everything here is plain scikit-learn / Optuna and picklable, so a fitted pipeline travels to Ray workers
and into model directories unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from emotune.features import accuracy
from emotune.spaces._pruners import successive_halving_over_epochs

# The `classic` feature set (the 180-means recipe's): 40 MFCC means, 12 chroma means, 128 mel-band mean powers.
CLASSIC_WIDTH = 180
CLASSIC_MFCC = slice(0, 40)
CLASSIC_CHROMA = slice(40, 52)
CLASSIC_MEL = slice(52, 180)

Report = Callable[[int, float], None]


class LogMel(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Natural log of the mel-band powers of the `classic` layout; every other column passes through.

    Mel-band means are powers spanning many decades (1e-8 .. 1e2), which distance- and gradient-based
    models cannot use before a log. ``log(max(x, floor))`` rather than ``log1p``: ``log1p`` is linear
    below 1, where most band powers lie. Inputs of any other width pass through unchanged:
    ``classic_stats`` already holds log-mel in dB, and other layouts are unknown here.

    Args:
        floor: Smallest power before the log (silent bands are exactly 0).
    """

    def __init__(self, floor: float = 1e-10) -> None:
        self.floor = floor

    def fit(self, X: Any, y: Any = None) -> LogMel:
        """Record the input width; nothing is learned. Returns self."""
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        if not self.floor > 0:
            raise ValueError(f"LogMel floor must be > 0, got {self.floor!r}")
        self.active_ = self.n_features_in_ == CLASSIC_WIDTH
        return self

    def transform(self, X: Any) -> np.ndarray:
        """[shape=(n, d)] -> [shape=(n, d)], float64, mel block logged when ``d == 180``."""
        check_is_fitted(self, "active_")
        X = validate_data(self, X, dtype=np.float64, reset=False, ensure_all_finite="allow-nan", copy=True)
        if self.active_:
            X[:, CLASSIC_MEL] = np.log(np.maximum(X[:, CLASSIC_MEL], self.floor))
        return X


def suggest_pca(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Optional PCA after scaling: ``pca`` (bool) and, when on, ``pca_variance`` (share of variance kept)."""
    params: dict[str, Any] = {"pca": trial.suggest_categorical("pca", [False, True])}
    if params["pca"]:
        params["pca_variance"] = trial.suggest_float("pca_variance", 0.80, 0.99)
    return params


def scaled_pipeline(params: dict[str, Any], model: BaseEstimator, *, seed: int) -> Pipeline:
    """``LogMel -> StandardScaler -> [PCA] -> model``, every step fit inside the fold that calls ``fit``.

    Args:
        params: The space's params; ``pca``/``pca_variance`` (from :func:`suggest_pca`) are read if present.
        model: The final classifier.
        seed: Seed of the PCA (the full SVD is deterministic anyway; kept for clarity).
    """
    steps: list[tuple[str, Any]] = [("log_mel", LogMel()), ("scale", StandardScaler())]
    if params.get("pca"):
        steps.append(("pca", PCA(n_components=params["pca_variance"], svd_solver="full", random_state=seed)))
    steps.append(("model", model))
    return Pipeline(steps)


def tree_pipeline(model: BaseEstimator) -> Pipeline:
    """A one-step pipeline: trees need no scaling or log (both are monotone per column).

    Kept a Pipeline so that every space's estimator has the same shape: ``est[:-1]`` preprocessing,
    ``est[-1]`` the model.
    """
    return Pipeline([("model", model)])


# --- iterative fits (boosting) ---------------------------------------------------------------------------


def fit_preprocessing(pipeline: Pipeline, X: Any, y: Any, X_val: Any) -> tuple[np.ndarray, np.ndarray]:
    """Fit every step but the last on ``X`` (in place) and return ``(X, X_val)`` transformed by them."""
    Xt, Xv = X, X_val
    for _, step in pipeline.steps[:-1]:
        if step is None or step == "passthrough":
            continue
        Xt = step.fit_transform(Xt, y)
        Xv = step.transform(Xv)
    return np.asarray(Xt), np.asarray(Xv)


def block_ends(n_rounds: int, n_blocks: int) -> dict[int, int]:
    """``{rounds done: step}`` for ``n_blocks`` equal blocks of ``n_rounds`` (the last ends at n_rounds).

    Steps are fractions of the trial's own budget, so every trial reports every step ``0..n_blocks-1``
    (fewer, still below ``n_blocks``, when ``n_rounds < n_blocks``).
    """
    ends: dict[int, int] = {}
    for step in range(n_blocks):
        ends[max(1, math.ceil((step + 1) * n_rounds / n_blocks))] = step
    return ends


def argmax_accuracy(proba: np.ndarray, classes: np.ndarray, y_true: Any) -> float:
    """Accuracy of the most probable class (columns in ``classes`` order) against the true labels."""
    proba = np.asarray(proba)
    if proba.ndim == 1:  # binary boosters return P(classes[1]) only
        proba = np.column_stack([1.0 - proba, proba])
    return accuracy(np.asarray(y_true), np.asarray(classes)[np.argmax(proba, axis=1)])


def epoch_hooks(max_steps: int) -> tuple[Callable[[], Any], Callable[..., Any]]:
    """``pruner()`` and ``fit(...)`` of a deep space trained for at most ``max_steps`` epochs per fold.

    ``pruner()``: successive halving on epochs (:func:`emotune.spaces.successive_halving_over_epochs`).
    ``fit(estimator, X, y, *, X_val, y_val, report)``: train, reporting the validation UAR after every
    epoch (step = epoch, 0-based). torch is imported when they are called, not when the space is.
    """

    def pruner() -> Any:
        return successive_halving_over_epochs(max_steps)

    def fit(estimator: Any, X: Any, y: Any, *, X_val: Any, y_val: Any, report: Report) -> Any:
        from emotune.spaces import _torch

        return _torch.fit_reporting(
            estimator, X, y, X_val=X_val, y_val=y_val, report=report, max_steps=max_steps
        )

    pruner.__doc__ = f"Successive halving on epochs (at most {max_steps} per fold)."
    fit.__doc__ = "Train, reporting the validation UAR after every epoch (step = epoch, 0-based)."
    return pruner, fit
