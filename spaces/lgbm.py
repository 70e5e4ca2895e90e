"""LightGBM (gradient-boosted trees) on raw `functionals` (or `classic_stats`, `classic`) features, pruned on boosting rounds."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from emotune.spaces._common import (
    Report,
    argmax_accuracy,
    block_ends,
    fit_preprocessing,
    tree_pipeline,
)
from emotune.spaces._pruners import median_over_rounds

NAME = "lgbm"
MAX_STEPS = 10  # validation reports per fit: one per tenth of the trial's boosting rounds
RESOURCES = {"num_cpus": 1}
FEATURES = "functionals"
ACCEPTS = ("functionals", "classic_stats", "classic")
MAX_BIN = 63  # histogram bins per feature: ~2x faster than 255 and ample for folds of <= ~1,500 rows


def suggest(trial: Any) -> dict[str, Any]:
    """Rounds (50..600, log), learning rate, leaves, leaf size, L1/L2, row and column sampling, weights."""
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 600, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 5e-3, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 60, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-8, 10.0, log=True),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-8, 10.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.2, 1.0),
        "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
    }


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> Pipeline:
    """A one-step pipeline around ``LGBMClassifier`` (63 bins, deterministic, one thread, bagging every round).

    ``n_classes`` is unused: the classes come from ``y`` at fit time.
    """
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(
        **params,
        subsample_freq=1,
        max_bin=MAX_BIN,
        random_state=seed,
        n_jobs=1,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    return tree_pipeline(model)


def fit(estimator: Pipeline, X: Any, y: Any, *, X_val: Any, y_val: Any, report: Report) -> Pipeline:
    """Fit ``estimator`` (from :func:`build`) on ``X, y``, reporting validation accuracy ``MAX_STEPS`` times.

    The report after each tenth of the rounds is ``report(step, accuracy on X_val)``; ``report`` may raise
    ``optuna.TrialPruned``, which stops training and propagates. The model is the one ``estimator.fit(X, y)``
    would give: the reports only read it.
    """
    Xt, Xv = fit_preprocessing(estimator, X, y, X_val)
    model = estimator[-1]
    classes = np.unique(np.asarray(y))
    ends = block_ends(model.n_estimators, MAX_STEPS)

    def _reporter(env: Any) -> None:
        rounds = env.iteration + 1
        step = ends.get(rounds)
        if step is not None:
            # num_threads: without it LightGBM resets OpenMP to every core for the rest of training,
            # which made a one-CPU worker ~9x slower on a busy machine.
            proba = env.model.predict(Xv, num_iteration=rounds, num_threads=model.n_jobs)
            report(step, argmax_accuracy(proba, classes, y_val))

    model.fit(Xt, y, callbacks=[_reporter])
    return estimator


def pruner() -> Any:
    """The first fold's validation accuracy after each tenth of the rounds against the median there
    (not judged in the first 20% of the rounds): :func:`~emotune.spaces.median_over_rounds`.
    """
    return median_over_rounds()
