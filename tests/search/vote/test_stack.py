"""The stacked voter and the out-of-fold choice between it and greedy weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from emotune.search._study import StudySpec
from emotune.search.vote._ensemble import Candidate, fit_and_score
from emotune.search.vote._stack import StackedVoter, choose_voter, fit_meta


def _folds(n: int, k: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    idx = np.arange(n)
    block = (idx // 5) % k  # blocks of 5 rows: every class in every fold
    return [(idx[block != f], idx[block == f]) for f in range(k)]


def _onehot(codes: np.ndarray, n_classes: int, sharp: float) -> np.ndarray:
    p = np.full((len(codes), n_classes), (1 - sharp) / (n_classes - 1))
    p[np.arange(len(codes)), codes] = sharp
    return p


def test_stacking_wins_where_weights_cannot_and_loses_where_they_suffice():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    # A member that always says the next class: no weighting of it helps, a stacker reads it right.
    shifted = _onehot((y + 1) % 3, 3, 0.8)
    noise = rng.dirichlet(np.ones(3), 300)
    choice = choose_voter([shifted, noise], y, _folds(300), metric="uar", iterations=10)
    assert choice.kind == "stacked" and choice.cv_scores[f"stacked(C={choice.C:g})"] > 0.95
    assert choice.cv_scores["greedy"] < 0.5
    # Two honest members, one right 90% of the time: greedy weights already do what can be done.
    right = np.where(rng.random(300) < 0.9, y, (y + 1) % 3)
    honest = [_onehot(right, 3, 0.7), noise]
    assert choose_voter(honest, y, _folds(300), metric="uar", iterations=10).kind == "greedy"
    assert (
        choose_voter(honest, y, _folds(300), metric="uar", iterations=10, voter="stacked").kind == "stacked"
    )


def test_stacked_voter_refits_members_never_its_meta_model():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 4))
    y = np.array(["a", "b", "c"] * 30)
    codes = np.array([0, 1, 2] * 30)
    oof = [_onehot(codes, 3, 0.6), rng.dirichlet(np.ones(3), 90)]
    meta = fit_meta(oof, codes, C=0.1, n_classes=3)
    before = meta.coef_.copy()
    voter = StackedVoter([("a", LogisticRegression()), ("b", LogisticRegression(C=0.1))], meta=meta)
    voter.fit(X, y)
    assert np.array_equal(voter.meta.coef_, before)
    proba = voter.predict_proba(X)
    assert proba.shape == (90, 3) and np.allclose(proba.sum(axis=1), 1)
    assert set(voter.predict(X)) <= {"a", "b", "c"}


def test_the_stacker_is_fit_on_training_rows_only():
    """fit_and_score's stacked voter: its meta-model saw the out-of-fold rows of ``train``, no test row."""
    rng = np.random.default_rng(2)
    n, train, test = 150, np.arange(120), np.arange(120, 150)
    labels = [("a", "b", "c")[i % 3] for i in range(n)]
    X = rng.normal(size=(n, 3)) + np.array([[i % 3, 0, 0] for i in range(n)])
    spec = StudySpec(space="logreg", feature_set="classic", feature_params={}, classes=["a", "b", "c"])
    codes = np.array([i % 3 for i in train])
    cands = [
        Candidate("s", 0, spec, {"C": 1.0, "penalty": "l2", "class_weight": None, "pca": False}, 0.9,
                  _onehot((codes + 1) % 3, 3, 0.8), key="classic"),
        Candidate("s", 1, spec, {"C": 0.01, "penalty": "l2", "class_weight": None, "pca": False}, 0.3,
                  rng.dirichlet(np.ones(3), 120), key="classic"),
    ]  # fmt: skip
    fit = fit_and_score(
        cands, {"classic": X}, labels, ["a", "b", "c"], train, test, metric="uar", progress=False,
        folds=_folds(120),
    )  # fmt: skip
    assert fit.choice is not None and fit.choice.kind == "stacked"
    assert fit.rows[-1]["voter_kind"] == "stacked" and fit.members == [0, 1]
    assert fit.voter.meta.n_rows_ == len(train)  # the out-of-fold rows of the training part, nothing else
    assert fit.test_proba is not None and fit.test_proba.shape == (30, 3)


def test_without_folds_the_voter_is_greedy():
    rng = np.random.default_rng(3)
    spec = StudySpec(space="logreg", feature_set="classic", feature_params={}, classes=["a", "b"])
    labels = ["a", "b"] * 20
    X = rng.normal(size=(40, 2))
    params = {"C": 1.0, "penalty": "l2", "class_weight": None, "pca": False}
    cands = [
        Candidate("s", i, spec, params, 0.5, rng.dirichlet(np.ones(2), 40), key="classic") for i in (0, 1)
    ]
    fit = fit_and_score(cands, {"classic": X}, labels, ["a", "b"], np.arange(40), np.arange(0), metric="uar",
                        progress=False)  # fmt: skip
    assert fit.rows[-1]["voter_kind"] == "greedy"
    with pytest.raises(ValueError, match="voter must be one of"):
        choose_voter([c.oof for c in cands], np.array([0, 1] * 20), _folds(40), metric="uar", iterations=5,
                     voter="best")  # fmt: skip
