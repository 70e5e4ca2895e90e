"""Multinomial logistic regression (L2, L1 or elastic net) on standardised `functionals` (or `classic_stats`, log-mel `classic`) features."""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from emotune.spaces._common import scaled_pipeline, suggest_pca
from emotune.spaces._pruners import median_over_folds

NAME = "logreg"
FEATURES = "functionals"
ACCEPTS = ("functionals", "classic_stats", "classic")
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 1

MAX_ITER = 1000

# Queued as a new study's first trial: strong L2 regularisation, which suits a few hundred
# standardised statistics of a few speakers.
DEFAULTS = [{"C": 0.1, "penalty": "l2", "class_weight": None, "pca": False}]


def suggest(trial: Any) -> dict[str, Any]:
    """C (1e-3..10, log), penalty (l2 | l1 | elasticnet with l1_ratio), class weights, optional PCA.

    On a few hundred standardised statistics of a few speakers, held-out speakers favour strong
    regularisation (C near 0.01-0.1); C above 10 only slows the solvers down.
    """
    params: dict[str, Any] = {
        "C": trial.suggest_float("C", 1e-3, 10.0, log=True),
        "penalty": trial.suggest_categorical("penalty", ["l2", "l1", "elasticnet"]),
    }
    if params["penalty"] == "elasticnet":
        params["l1_ratio"] = trial.suggest_float("l1_ratio", 0.05, 0.95)
    params["class_weight"] = trial.suggest_categorical("class_weight", [None, "balanced"])
    params.update(suggest_pca(trial))
    return params


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> Pipeline:
    """``LogMel -> StandardScaler -> [PCA] -> LogisticRegression`` (lbfgs for L2, saga otherwise).

    ``n_classes`` is unused: the classes come from ``y`` at fit time.
    """
    penalty = params["penalty"]
    l1_ratio = {"l2": 0.0, "l1": 1.0}.get(penalty, params.get("l1_ratio"))
    model = LogisticRegression(
        C=params["C"],
        l1_ratio=l1_ratio,
        solver="lbfgs" if penalty == "l2" else "saga",
        class_weight=params["class_weight"],
        max_iter=MAX_ITER,
        random_state=seed,
    )
    return scaled_pipeline(params, model, seed=seed)


def pruner() -> Any:
    """Stop after a fold whose running mean of fold scores is below the median there (:func:`~emotune.spaces.median_over_folds`)."""
    return median_over_folds()
