"""A space whose model costs nothing, to measure per-trial orchestration overhead."""

from __future__ import annotations

NAME = "trivial"
FEATURES = "classic"
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 1


def suggest(trial):
    return {
        "strategy": trial.suggest_categorical("strategy", ["prior", "stratified", "uniform"]),
        "x": trial.suggest_float("x", 0.0, 1.0),
    }


def build(params, *, seed, n_classes=None):
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy=params["strategy"], random_state=seed)
