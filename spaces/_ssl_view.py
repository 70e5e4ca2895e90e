"""How a flat-feature space reads the ``ssl`` set: one layer, pooled as ``mean`` or ``mean+std``.

An ``ssl`` row is [shape=(layers, 2 * dim)]: every hidden state of a pretrained encoder (0 = the input
embeddings) pooled over time as ``[mean | std]`` (:mod:`emotune.features._ssl`). A space whose models
take flat rows (logreg, svm, mlp, knn, the trees and boosters) sees the view a trial chooses: its
``layer`` (an integer trial parameter) and its ``pooling`` (:data:`POOLINGS`). Spaces that take the whole
stack (``FEATURES = "ssl"``, e.g. ``ssl_head``) see it unchanged.

The objective applies the view to the matrix before the folds (:func:`trial_view`); a refitted or
exported member carries it as :class:`LayerView`, so it takes the whole stack like the cache holds it.
The ``ssl_head`` space's pieces live here too: :class:`StackScaler` and :class:`WeightedLayersNet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone

__all__ = [
    "LAYER_PARAM",
    "POOLINGS",
    "POOLING_PARAM",
    "VIEW_PARAMS",
    "LayerView",
    "StackScaler",
    "WeightedLayersNet",
    "build_viewed",
    "layer_weights",
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
    if LAYER_PARAM not in params:  # no view (a space reading whole stacks may have its own `pooling`)
        return space.build(params, seed=seed, n_classes=n_classes)
    own = {k: v for k, v in params.items() if k not in VIEW_PARAMS}
    estimator = space.build(own, seed=seed, n_classes=n_classes)
    return LayerView(
        estimator, layer=int(params[LAYER_PARAM]), pooling=str(params.get(POOLING_PARAM, "mean+std"))
    )


class StackScaler(TransformerMixin, BaseEstimator):
    """Standardise every element of ``ssl`` stacks ``[shape=(n, layers, 2 * dim)]`` over the rows (fit inside
    each fold); an element constant over the rows is only centred. Same shape out, float32."""

    def fit(self, X: Any, y: Any = None) -> StackScaler:
        """Learn each element's mean and standard deviation. Returns self."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 3:
            raise ValueError(f"StackScaler takes (n, layers, width) stacks, got shape {X.shape}")
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The standardised stacks."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1:] != self.mean_.shape:
            raise ValueError(f"StackScaler was fit on rows of shape {self.mean_.shape}, got {X.shape[1:]}")
        return ((X - self.mean_) / self.scale_).astype(np.float32)


@dataclass(frozen=True)
class WeightedLayersNet:
    """SUPERB's recipe on pooled stacks: a softmax-weighted sum of the layers, then a small dense head.

    Input ``[shape=(n, layers, 2 * dim)]``; ``pooling="mean"`` reads the means only. The layer weights
    start equal (zeros before the softmax) and are learnt with the head; after fit,
    :func:`layer_weights` reads them.
    """

    pooling: str = "mean+std"
    fc_units: tuple[int, ...] = (256,)
    batch_norm: bool = False
    fc_dropout: float = 0.0
    # The layer weights learn at this multiple of the head's rate: a handful of logits that the head's
    # small rate would barely move in a few hundred steps (at 1e-3, 30 epochs of 180 rows: +-0.2).
    weights_lr_scale: float = 30.0

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> Any:
        import torch
        from torch import nn

        from emotune.spaces._torch import dense_layers

        if len(input_shape) != 2 or input_shape[1] % 2:
            raise ValueError(f"WeightedLayersNet takes (layers, 2 * dim) rows, got {input_shape}")
        layers, width = int(input_shape[0]), int(input_shape[1])
        keep = width // 2 if self.pooling == "mean" else width

        class Weighted(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.logits = nn.Parameter(torch.zeros(layers))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                w = torch.softmax(self.logits, dim=0)
                return (x[..., :keep] * w[None, :, None]).sum(dim=1)

        head = dense_layers(
            keep, self.fc_units, n_classes, batch_norm=self.batch_norm, dropout=self.fc_dropout
        )
        return nn.Sequential(Weighted(), *head)

    def parameter_groups(self, module: Any, lr: float) -> list[dict[str, Any]]:
        """The layer weights at ``weights_lr_scale`` times the head's rate (:class:`TorchClassifier` asks)."""
        first = list(module[0].parameters())
        rest = [p for layer in list(module)[1:] for p in layer.parameters()]
        return [{"params": first, "lr": lr * self.weights_lr_scale}, {"params": rest, "lr": lr}]


def layer_weights(estimator: Any) -> np.ndarray:
    """The softmax layer weights a fitted ``ssl_head`` classifier learnt ``[shape=(layers,)]``."""
    import torch

    logits = estimator.module_[0].logits.detach().cpu()
    return torch.softmax(logits, dim=0).numpy()
