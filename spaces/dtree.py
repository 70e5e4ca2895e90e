"""A single decision tree on raw `functionals` (or `classic_stats`, `classic`) features (splits are invariant to scaling and the mel log)."""

from __future__ import annotations

from typing import Any

from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from emotune.spaces._common import tree_pipeline
from emotune.spaces._pruners import median_over_folds

NAME = "dtree"
FEATURES = "functionals"
ACCEPTS = ("functionals", "classic_stats", "classic")
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 1


def suggest(trial: Any) -> dict[str, Any]:
    """Criterion, splitter, depth (2..30), split/leaf sizes, feature share, cost-complexity alpha, weights."""
    return {
        "criterion": trial.suggest_categorical("criterion", ["gini", "entropy"]),
        "splitter": trial.suggest_categorical("splitter", ["best", "random"]),
        "max_depth": trial.suggest_int("max_depth", 2, 30, log=True),
        "min_samples_split": trial.suggest_int("min_samples_split", 2, 40, log=True),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 20, log=True),
        "max_features": trial.suggest_float("max_features", 0.05, 1.0, log=True),
        "ccp_alpha": trial.suggest_float("ccp_alpha", 1e-6, 0.05, log=True),
        "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
    }


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> Pipeline:
    """A one-step pipeline around ``DecisionTreeClassifier``.

    ``n_classes`` is unused: the classes come from ``y`` at fit time.
    """
    return tree_pipeline(DecisionTreeClassifier(**params, random_state=seed))


def pruner() -> Any:
    """Stop after a fold whose running mean of fold scores is below the median there (:func:`~emotune.spaces.median_over_folds`)."""
    return median_over_folds()
