"""How a flat-feature space reads the ``ssl`` set: one layer, pooled as ``mean`` or ``mean+std``.

An ``ssl`` row is [shape=(layers, 2 * dim)]: every hidden state of a pretrained encoder (0 = the input
embeddings) pooled over time as ``[mean | std]`` (:mod:`emotune.features._ssl`). A space whose models
take flat rows (logreg, svm, mlp, knn, the trees and boosters) sees the view a trial chooses: its
``layer`` (an integer trial parameter) and its ``pooling`` (:data:`POOLINGS`). Spaces that take the whole
stack (``FEATURES = "ssl"``, e.g. ``ssl_head``) see it unchanged.

The objective applies the view to the matrix before the folds (:func:`trial_view`); a refitted or
exported member carries it as :class:`LayerView`, so it takes the whole stack like the cache holds it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

__all__ = [
    "LAYER_PARAM",
    "POOLINGS",
    "POOLING_PARAM",
    "VIEW_PARAMS",
    "LayerView",
    "build_viewed",
    "select",
    "trial_view",
    "viewed",
]

LAYER_PARAM = "layer"
POOLING_PARAM = "pooling"
POOLINGS: tuple[str, ...] = ("mean", "mean+std")
VIEW_PARAMS: tuple[str, ...] = (LAYER_PARAM, POOLING_PARAM)


def viewed(space: ModuleType, X: np.ndarray) -> bool:
    """Whether ``space`` reads ``X`` through a layer view: a layer stack given to a flat-feature space."""
    return np.ndim(X) == 3 and getattr(space, "FEATURES", None) != "ssl"


def select(X: np.ndarray, layer: int, pooling: str) -> np.ndarray:
    """One layer of a stack ``[shape=(n, layers, 2 * dim)]``: ``[shape=(n, dim)]`` means or ``(n, 2 * dim)``.

    Raises:
        ValueError: not a stack, a layer outside it, or an unknown pooling.
    """
    X = np.asarray(X)
    if X.ndim != 3 or X.shape[2] % 2:
        raise ValueError(f"an ssl layer view needs rows of shape (layers, 2 * dim), got {X.shape[1:]}")
    if not 0 <= int(layer) < X.shape[1]:
        raise ValueError(f"layer={layer} is outside the encoder's 0..{X.shape[1] - 1}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
    part = X[:, int(layer)]
    return part[:, : X.shape[2] // 2] if pooling == "mean" else part


def trial_view(trial: Any, X: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Suggest a trial's ``layer`` (0..layers-1) and ``pooling``; the selected matrix and those params."""
    layer = trial.suggest_int(LAYER_PARAM, 0, int(X.shape[1]) - 1)
    pooling = trial.suggest_categorical(POOLING_PARAM, list(POOLINGS))
    return select(X, layer, pooling), {LAYER_PARAM: layer, POOLING_PARAM: pooling}


class LayerView(ClassifierMixin, BaseEstimator):
    """A classifier of flat rows fit and applied to one layer of ``ssl`` stacks (see :func:`select`).

    Args:
        estimator: The space's unfitted classifier.
        layer: The hidden state read (0 = input embeddings).
        pooling: ``"mean"`` or ``"mean+std"``.
    """

    def __init__(self, estimator: Any = None, layer: int = 0, pooling: str = "mean+std") -> None:
        self.estimator = estimator
        self.layer = layer
        self.pooling = pooling

    def fit(self, X: Any, y: Any) -> LayerView:
        """Fit a clone of ``estimator`` on the chosen layer. Returns self."""
        self.estimator_ = clone(self.estimator).fit(select(X, self.layer, self.pooling), y)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order."""
        return np.asarray(self.estimator_.predict_proba(select(X, self.layer, self.pooling)))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(axis=1)]


def build_viewed(
    space: ModuleType, params: dict[str, Any], *, seed: int, n_classes: int | None = None
) -> Any:
    """``space.build`` on the space's own params, as a :class:`LayerView` when ``params`` hold a ``layer``."""
    own = {k: v for k, v in params.items() if k not in VIEW_PARAMS}
    estimator = space.build(own, seed=seed, n_classes=n_classes)
    if LAYER_PARAM not in params:
        return estimator
    return LayerView(
        estimator, layer=int(params[LAYER_PARAM]), pooling=str(params.get(POOLING_PARAM, "mean+std"))
    )
