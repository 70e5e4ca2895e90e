"""Random forest on raw `functionals` (or `classic_stats`, `classic`) features (tree splits are invariant to scaling and the mel log)."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from emotune.spaces._common import tree_pipeline
from emotune.spaces._pruners import median_over_folds

NAME = "rf"
FEATURES = "functionals"
ACCEPTS = ("functionals", "classic_stats", "classic")
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 1


def suggest(trial: Any) -> dict[str, Any]:
    """Trees (50..800, log), depth (4..40), feature share per split, leaf size, bootstrap, class weights."""
    params: dict[str, Any] = {
        "n_estimators": trial.suggest_int("n_estimators", 50, 800, log=True),
        "criterion": trial.suggest_categorical("criterion", ["gini", "entropy"]),
        "max_depth": trial.suggest_int("max_depth", 4, 40, log=True),
        # sqrt(180)/180 = 0.075 is scikit-learn's default share.
        "max_features": trial.suggest_float("max_features", 0.02, 0.6, log=True),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 10, log=True),
        "bootstrap": trial.suggest_categorical("bootstrap", [True, False]),
    }
    if params["bootstrap"]:
        params["max_samples"] = trial.suggest_float("max_samples", 0.5, 1.0)
    params["class_weight"] = trial.suggest_categorical(
        "class_weight", [None, "balanced", "balanced_subsample"]
    )
    return params


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> Pipeline:
    """A one-step pipeline around ``RandomForestClassifier`` (one thread).

    ``n_classes`` is unused: the classes come from ``y`` at fit time.
    """
    return tree_pipeline(RandomForestClassifier(**params, n_jobs=1, random_state=seed))


def pruner() -> Any:
    """Stop after a fold whose running mean of fold scores is below the median there (:func:`~emotune.spaces.median_over_folds`)."""
    return median_over_folds()
