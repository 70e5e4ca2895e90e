"""XGBoost (gbtree or DART) on raw `functionals` (or `classic_stats`, `classic`) features, pruned on boosting rounds.

The parameter names are XGBoost's own, as in the 180-means recipe, whose best was gbtree, lambda 7.2e-8, alpha 2.2e-5,
max_depth 7, eta 9.3e-6, gamma 1.8e-5, lossguide (test accuracy 0.73). gblinear is left out: on these
features it is an elastic-net linear model, which the ``logreg`` space searches better.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted, validate_data

from emotune.spaces._common import (
    Report,
    argmax_accuracy,
    block_ends,
    fit_preprocessing,
    tree_pipeline,
)
from emotune.spaces._pruners import median_over_rounds

NAME = "xgb"
FEATURES = "functionals"
ACCEPTS = ("functionals", "classic_stats", "classic")
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 10  # validation reports per fit: one per tenth of the trial's boosting rounds
# Histogram bins per feature. Folds hold ~100-1,500 rows, so 64 bins still hold ~2-25 rows each; fitting
# is ~3.5x faster than with the default 256, as the per-node split search scales with bins x features.
MAX_BIN = 64


def suggest(trial: Any) -> dict[str, Any]:
    """The 180-means recipe's space (booster, lambda, alpha, max_depth, eta, gamma, grow_policy) plus rounds, row/column
    subsampling, child weight, class weights, and DART's dropout when booster is dart.

    eta spans 1e-6..1 (log) to keep that recipe's 9.3e-6; with so small a step the probabilities stay near
    uniform but their argmax already carries the trees' votes.
    """
    params: dict[str, Any] = {
        "booster": trial.suggest_categorical("booster", ["gbtree", "dart"]),
        "n_estimators": trial.suggest_int("n_estimators", 50, 500, log=True),
        "lambda": trial.suggest_float("lambda", 1e-8, 1.0, log=True),
        "alpha": trial.suggest_float("alpha", 1e-8, 1.0, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 12),
        "eta": trial.suggest_float("eta", 1e-6, 1.0, log=True),
        "gamma": trial.suggest_float("gamma", 1e-8, 1.0, log=True),
        "grow_policy": trial.suggest_categorical("grow_policy", ["depthwise", "lossguide"]),
        "min_child_weight": trial.suggest_float("min_child_weight", 1e-2, 10.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.2, 1.0),
        "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
    }
    if params["booster"] == "dart":
        params["sample_type"] = trial.suggest_categorical("sample_type", ["uniform", "weighted"])
        params["normalize_type"] = trial.suggest_categorical("normalize_type", ["tree", "forest"])
        params["rate_drop"] = trial.suggest_float("rate_drop", 1e-8, 1.0, log=True)
        params["skip_drop"] = trial.suggest_float("skip_drop", 1e-8, 1.0, log=True)
    return params


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> Pipeline:
    """A one-step pipeline around :class:`XGBoostClassifier` (hist trees of 64 bins, one thread).

    ``n_classes`` is unused: the classes come from ``y`` at fit time.
    """
    booster = {k: v for k, v in params.items() if k not in ("n_estimators", "class_weight")}
    booster["max_bin"] = MAX_BIN
    model = XGBoostClassifier(
        params=booster,
        n_estimators=params["n_estimators"],
        class_weight=params["class_weight"],
        random_state=seed,
        n_jobs=1,
    )
    return tree_pipeline(model)


def fit(estimator: Pipeline, X: Any, y: Any, *, X_val: Any, y_val: Any, report: Report) -> Pipeline:
    """Fit ``estimator`` (from :func:`build`) on ``X, y``, reporting validation accuracy ``MAX_STEPS`` times.

    The report after each tenth of the rounds is ``report(step, accuracy on X_val)``; ``report`` may raise
    ``optuna.TrialPruned``, which stops training and propagates. The model is the one ``estimator.fit(X, y)``
    would give: the reports only read it.
    """
    import xgboost

    Xt, Xv = fit_preprocessing(estimator, X, y, X_val)
    model: XGBoostClassifier = estimator[-1]
    classes = np.unique(np.asarray(y))
    ends = block_ends(model.n_estimators, MAX_STEPS)
    dval = xgboost.DMatrix(Xv, nthread=model.n_jobs)

    class _Reporter(xgboost.callback.TrainingCallback):
        def after_iteration(self, booster: Any, epoch: int, evals_log: Any) -> bool:
            step = ends.get(epoch + 1)
            if step is not None:  # the booster holds exactly epoch + 1 rounds now
                report(step, argmax_accuracy(booster.predict(dval), classes, y_val))
            return False

    model.fit(Xt, y, callbacks=[_Reporter()])
    return estimator


def pruner() -> Any:
    """The first fold's validation accuracy after each tenth of the rounds against the median there
    (not judged in the first 20% of the rounds): :func:`~emotune.spaces.median_over_rounds`.
    """
    return median_over_rounds()


class XGBoostClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn classifier over ``xgboost.train`` with native parameter names and any label type.

    Unlike ``xgboost.XGBClassifier`` it takes training callbacks in :meth:`fit` (not stored on the model,
    so a fitted model pickles without them) and class weights.

    Args:
        params: XGBoost booster parameters (``booster``, ``eta``, ``lambda``, ...); the objective, class
            count, seed and threads are set here.
        n_estimators: Boosting rounds.
        class_weight: None or "balanced" (sample weights inversely proportional to class frequency).
        random_state: XGBoost ``seed``.
        n_jobs: XGBoost ``nthread``.
    """

    def __init__(
        self,
        params: dict[str, Any] | None = None,
        *,
        n_estimators: int = 100,
        class_weight: str | None = None,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.params = params
        self.n_estimators = n_estimators
        self.class_weight = class_weight
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(
        self, X: Any, y: Any, *, sample_weight: Any = None, callbacks: Sequence[Any] | None = None
    ) -> XGBoostClassifier:
        """Train ``n_estimators`` rounds of ``multi:softprob``; ``callbacks`` go to ``xgboost.train``."""
        import xgboost

        X, y = validate_data(self, X, y, dtype=np.float32)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"XGBoostClassifier needs at least 2 classes, got {len(self.classes_)}")
        weight = None
        if self.class_weight is not None:
            weight = compute_sample_weight(self.class_weight, y)
        if sample_weight is not None:
            weight = np.asarray(sample_weight, dtype=float) * (1.0 if weight is None else weight)
        params = {
            # One intercept for every class, as before XGBoost 2.0 (which estimates one per class): with
            # an eta of 1e-5 (the 180-means recipe's) the estimated intercepts outweigh the trees and every row gets the
            # majority class; from a common start the argmax follows the trees' votes.
            "base_score": 0.5,
            **(self.params or {}),
            "objective": "multi:softprob",
            "num_class": len(self.classes_),
            "tree_method": "hist",
            "seed": self.random_state,
            "nthread": self.n_jobs,
            "verbosity": 0,
        }
        dtrain = xgboost.DMatrix(X, label=encoded, weight=weight, nthread=self.n_jobs)
        self.booster_ = xgboost.train(
            params, dtrain, num_boost_round=self.n_estimators, callbacks=list(callbacks or ())
        )
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """[shape=(n, n_classes)] class probabilities, columns in ``classes_`` order."""
        import xgboost

        check_is_fitted(self, "booster_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        proba = self.booster_.predict(xgboost.DMatrix(X, nthread=self.n_jobs))
        proba = np.asarray(proba, dtype=np.float64).reshape(len(X), len(self.classes_))
        return proba / proba.sum(axis=1, keepdims=True)  # float32 softmax sums drift by ~1e-7

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
