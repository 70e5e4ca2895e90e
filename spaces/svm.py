"""RBF support vector machine with Platt-calibrated probabilities on standardised `functionals` (or `classic_stats`, log-mel `classic`) features.

Not in the seeds; a strong baseline on these features. Probabilities come from
``CalibratedClassifierCV(SVC(), ensemble=False)``: sigmoid calibration fit on 3-fold out-of-fold decision
values, the SVC itself refit on the whole fold. That is what scikit-learn 1.9 recommends over the
deprecated ``SVC(probability=True)``, costs about half as much (3 folds instead of libsvm's 5), and keeps
``predict`` equal to the argmax of ``predict_proba``.
"""

from __future__ import annotations

from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from emotune.spaces._common import scaled_pipeline, suggest_pca
from emotune.spaces._pruners import median_over_folds

NAME = "svm"
FEATURES = "functionals"
ACCEPTS = ("functionals", "classic_stats", "classic")
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 1

CALIBRATION_FOLDS = 3

# Queued as a new study's first trial: scikit-learn's defaults (C=1, gamma "scale" = 1/width on standardised
# inputs: 1/886 on `functionals`, 1/479 on `classic_stats`; 0.001 sits between).
DEFAULTS = [{"C": 1.0, "gamma": 0.001, "class_weight": None, "pca": False}]


def suggest(trial: Any) -> dict[str, Any]:
    """C (0.1..100, log), RBF gamma (1e-4..0.1, log), class weights, PCA.

    On standardised inputs sklearn's ``gamma="scale"`` is 1/width: 1/886 for ``functionals``, 1/479 for
    ``classic_stats``, 1/180 for ``classic``, all well inside the range; gammas far above it make every row its own class, far below
    a linear model (searched by ``logreg``). Trials of older studies outside these ranges still rebuild.
    """
    params: dict[str, Any] = {
        "C": trial.suggest_float("C", 0.1, 100.0, log=True),
        "gamma": trial.suggest_float("gamma", 1e-4, 0.1, log=True),
        "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
    }
    params.update(suggest_pca(trial))
    return params


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> Pipeline:
    """``LogMel -> StandardScaler -> [PCA] -> CalibratedClassifierCV(SVC(rbf), sigmoid, 3 folds)``.

    Every class needs at least 3 rows in a training fold (the calibration folds are stratified).
    ``n_classes`` is unused: the classes come from ``y`` at fit time.
    """
    svc = SVC(
        C=params["C"],
        kernel="rbf",
        gamma=params["gamma"],
        class_weight=params["class_weight"],
        cache_size=500,
        random_state=seed,
    )
    model = CalibratedClassifierCV(svc, method="sigmoid", cv=CALIBRATION_FOLDS, ensemble=False)
    return scaled_pipeline(params, model, seed=seed)


def pruner() -> Any:
    """Stop after a fold whose running mean of fold scores is below the median there (:func:`~emotune.spaces.median_over_folds`)."""
    return median_over_folds()
