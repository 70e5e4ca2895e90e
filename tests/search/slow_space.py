"""A user's own space module for the tests: logistic regression that takes a while per fold."""

from __future__ import annotations

import time

NAME = "slow_logreg"
FEATURES = "classic"
RESOURCES = {"num_cpus": 1}
MAX_STEPS = 1
SECONDS_PER_FIT = 1.5


class _Slow:
    def __init__(self, C: float, seed: int) -> None:
        self.C = C
        self.seed = seed

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        time.sleep(SECONDS_PER_FIT)
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=200)).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.model_.predict(X)


def suggest(trial):
    return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}


def build(params, *, seed, n_classes=None):
    return _Slow(params["C"], seed)
