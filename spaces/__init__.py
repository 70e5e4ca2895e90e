"""Search spaces: one module per model family, found by a registry.

A space module declares ``NAME``, ``FEATURES`` (its default feature set), optionally ``ACCEPTS`` (every
set it can consume; a study may search among them), ``RESOURCES``, ``MAX_STEPS``, ``suggest(trial) -> dict``
and ``build(params, *, seed, n_classes=None) -> estimator`` (optionally ``pruner()`` and an iterative
``fit(estimator, X, y, *, X_val, y_val, report)``); see the project contract. Importing this package
imports no space module and no heavy library.

Example:
    >>> from emotune.spaces import get
    >>> space = get("knn")                       # or get("path/to/my_space.py")
    >>> estimator = space.build({"n_neighbors": 5, "weights": "distance", "metric": "cosine", "pca": False},
    ...                         seed=0)
"""

from __future__ import annotations

from emotune.spaces._registry import (
    USER_MODULE_PREFIX,
    SpaceError,
    accepts,
    describe,
    get,
    load_file_as,
    names,
)

__all__ = ["USER_MODULE_PREFIX", "SpaceError", "accepts", "describe", "get", "load_file_as", "names"]
