"""k-nearest neighbours on standardised (optionally PCA-reduced) `functionals` (or `classic_stats`, log-mel `classic`) features."""

from __future__ import annotations

from typing import Any

from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from emotune.spaces._common import scaled_pipeline, suggest_pca
from emotune.spaces._pruners import median_over_folds

NAME = "knn"
FEATURES = "functionals"
ACCEPTS = ("functionals", "classic_stats", "classic")
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 1


def suggest(trial: Any) -> dict[str, Any]:
    """Neighbours (1-40, log; folds hold ~120-1,200 rows), vote weighting, distance, optional PCA."""
    params: dict[str, Any] = {
        "n_neighbors": trial.suggest_int("n_neighbors", 1, 40, log=True),
        "weights": trial.suggest_categorical("weights", ["uniform", "distance"]),
        "metric": trial.suggest_categorical("metric", ["euclidean", "manhattan", "cosine"]),
    }
    params.update(suggest_pca(trial))
    return params


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> Pipeline:
    """``LogMel -> StandardScaler -> [PCA] -> KNeighborsClassifier`` (brute force, one thread).

    ``n_classes`` is unused: the classes come from ``y`` at fit time.
    """
    model = KNeighborsClassifier(
        n_neighbors=params["n_neighbors"],
        weights=params["weights"],
        metric=params["metric"],
        algorithm="brute",
        n_jobs=1,
    )
    return scaled_pipeline(params, model, seed=seed)


def pruner() -> Any:
    """Stop after a fold whose running mean of fold scores is below the median there (:func:`~emotune.spaces.median_over_folds`)."""
    return median_over_folds()
