"""scikit-learn multilayer perceptron (one hidden layer) on log-mel, standardised features.

The 180-means recipe's best: relu, lbfgs, 1,283 hidden units, alpha 0.385, batch 163, constant rate, 1,000 iterations
(test accuracy 0.83, its best single model). ``batch_size`` and the learning-rate parameters only exist for
the solvers that use them.
"""

from __future__ import annotations

from typing import Any

from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from emotune.spaces._common import scaled_pipeline, suggest_pca
from emotune.spaces._pruners import median_over_folds

NAME = "mlp"
FEATURES = "functionals"
ACCEPTS = ("functionals", "classic_stats", "classic")
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 1

MAX_ITER = 1000

# Queued as a new study's first trial: one hidden layer of 256 ReLUs, strong weight decay, adam.
DEFAULTS = [
    {"hidden_layer_size": 256, "activation": "relu", "solver": "adam", "alpha": 1.0, "batch_size": 64,
     "learning_rate_init": 0.001, "pca": False}
]  # fmt: skip


def suggest(trial: Any) -> dict[str, Any]:
    """Hidden units (16..1,400, log), activation, solver, alpha (1e-6..10, log), solver-specific rates."""
    params: dict[str, Any] = {
        "hidden_layer_size": trial.suggest_int("hidden_layer_size", 16, 1400, log=True),
        "activation": trial.suggest_categorical("activation", ["relu", "tanh", "logistic"]),
        "solver": trial.suggest_categorical("solver", ["lbfgs", "adam", "sgd"]),
        "alpha": trial.suggest_float("alpha", 1e-6, 10.0, log=True),
    }
    if params["solver"] != "lbfgs":
        params["batch_size"] = trial.suggest_int("batch_size", 16, 512, log=True)
        params["learning_rate_init"] = trial.suggest_float("learning_rate_init", 1e-4, 1e-1, log=True)
    if params["solver"] == "sgd":
        params["learning_rate"] = trial.suggest_categorical(
            "learning_rate", ["constant", "invscaling", "adaptive"]
        )
    params.update(suggest_pca(trial))
    return params


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> Pipeline:
    """``LogMel -> StandardScaler -> [PCA] -> MLPClassifier`` (at most 1,000 iterations or epochs).

    ``n_classes`` is unused: the classes come from ``y`` at fit time.
    """
    solver = params["solver"]
    model = MLPClassifier(
        hidden_layer_sizes=(params["hidden_layer_size"],),
        activation=params["activation"],
        solver=solver,
        alpha=params["alpha"],
        batch_size=params.get("batch_size", "auto"),
        learning_rate=params.get("learning_rate", "constant"),
        learning_rate_init=params.get("learning_rate_init", 1e-3),
        max_iter=MAX_ITER,
        # adam/sgd: stop when the score on 10% of the fold's rows stalls for 10 epochs; otherwise a small
        # constant rate runs all 1,000 epochs (~6x the time) for no gain. lbfgs ignores it.
        early_stopping=solver != "lbfgs",
        random_state=seed,
    )
    return scaled_pipeline(params, model, seed=seed)


def pruner() -> Any:
    """Stop after a fold whose running mean of fold scores is below the median there (:func:`~emotune.spaces.median_over_folds`)."""
    return median_over_folds()
