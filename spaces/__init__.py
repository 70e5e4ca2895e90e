"""Search spaces: one module per model family, found by a registry.

A space module declares ``NAME``, ``FEATURES`` (its default feature set), optionally ``ACCEPTS`` (every
set it can consume; a study may search among them), ``RESOURCES``, ``MAX_STEPS``, ``suggest(trial) -> dict``
and ``build(params, *, seed, n_classes=None) -> estimator`` (optionally ``pruner()`` and an iterative
``fit(estimator, X, y, *, X_val, y_val, report)``); see the README ("Your own search space").
Importing this package imports no space module and no heavy library; the pruners (every pruner a study
may use, and the ``--pruner`` names) load from ``emotune.spaces._pruners`` on first use.

Example:
    >>> from emotune.spaces import get
    >>> space = get("knn")                       # or get("path/to/my_space.py")
    >>> estimator = space.build({"n_neighbors": 5, "weights": "distance", "metric": "cosine", "pca": False},
    ...                         seed=0)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from emotune.spaces._registry import (
    USER_MODULE_PREFIX,
    SpaceError,
    accepts,
    describe,
    get,
    load_file_as,
    names,
    reads_ssl,
)

if TYPE_CHECKING:
    from emotune.spaces._pruners import (
        PRUNER_ALIASES,
        PRUNERS,
        FirstFoldOnlyPruner,
        LatestValuePercentilePruner,
        make_pruner,
        median_over_folds,
        median_over_rounds,
        successive_halving_over_epochs,
    )

# The pruners (emotune.spaces._pruners) import Optuna, so they load on first use, not with the package.
_PRUNER_NAMES = (
    "PRUNERS",
    "PRUNER_ALIASES",
    "FirstFoldOnlyPruner",
    "LatestValuePercentilePruner",
    "make_pruner",
    "median_over_folds",
    "median_over_rounds",
    "successive_halving_over_epochs",
)

__all__ = [
    "PRUNERS",
    "PRUNER_ALIASES",
    "USER_MODULE_PREFIX",
    "FirstFoldOnlyPruner",
    "LatestValuePercentilePruner",
    "SpaceError",
    "accepts",
    "describe",
    "get",
    "load_file_as",
    "make_pruner",
    "median_over_folds",
    "median_over_rounds",
    "names",
    "reads_ssl",
    "successive_halving_over_epochs",
]


def __getattr__(name: str) -> Any:
    if name in _PRUNER_NAMES:
        return getattr(importlib.import_module("emotune.spaces._pruners"), name)
    raise AttributeError(f"module 'emotune.spaces' has no attribute {name!r}")
