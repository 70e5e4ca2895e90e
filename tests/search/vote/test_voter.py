"""SoftVoter and greedy ensemble selection on small generated data with known answers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from emotune.features import score
from emotune.search.vote._voter import SoftVoter, blend, greedy_selection, normalize_weights


def _data(seed: int = 0, n: int = 120):
    X, y = make_classification(
        n_samples=n, n_features=8, n_informative=5, n_classes=3, n_clusters_per_class=1, random_state=seed
    )
    labels = np.array(["angry", "happy", "sad"])[y]
    return X, labels


def _members():
    return [("nb", GaussianNB()), ("knn", KNeighborsClassifier(5)), ("lr", LogisticRegression(max_iter=500))]


@parametrize_with_checks(
    [SoftVoter([("nb", GaussianNB()), ("lr", LogisticRegression(max_iter=300))], weights=[1, 2])]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_fit_predict_with_string_labels():
    X, y = _data()
    voter = SoftVoter(_members(), weights=[1, 1, 2]).fit(X, y)
    assert voter.classes_.tolist() == ["angry", "happy", "sad"]
    proba = voter.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert set(voter.predict(X)) <= {"angry", "happy", "sad"}
    assert (voter.predict(X) == y).mean() > 0.8


def test_blend_is_the_weighted_mean_of_member_probabilities():
    X, y = _data()
    voter = SoftVoter(_members(), weights=[3, 0, 1]).fit(X, y)
    members = voter.member_probas(X)
    np.testing.assert_allclose(voter.predict_proba(X), 0.75 * members[0] + 0.25 * members[2], atol=1e-12)


def test_explicit_class_order_and_a_class_never_seen_in_fit():
    X, y = _data()
    order = ["sad", "neutral", "happy", "angry"]
    voter = SoftVoter(_members()[:1], classes=order).fit(X, y)
    assert voter.classes_.tolist() == order
    proba = voter.predict_proba(X)
    assert np.all(proba[:, 1] == 0)  # "neutral" has no training row
    nb = GaussianNB().fit(X, y)  # sorted classes: angry, happy, sad
    np.testing.assert_allclose(proba[:, [3, 2, 0]], nb.predict_proba(X), atol=1e-12)
    with pytest.raises(ValueError, match="outside classes"):
        SoftVoter(_members()[:1], classes=["sad", "happy"]).fit(X, y)


def test_members_read_their_own_inputs():
    X, y = _data()
    other = np.random.default_rng(1).normal(size=(len(X), 5))
    X_dict = {"classic": X, "mfcc_seq": other}
    voter = SoftVoter(
        [("lr", LogisticRegression(max_iter=500)), ("knn", KNeighborsClassifier(5))],
        inputs=["classic", "mfcc_seq"],
    ).fit(X_dict, y)
    lr = LogisticRegression(max_iter=500).fit(X, y)
    knn = KNeighborsClassifier(5).fit(other, y)
    got = voter.member_probas(X_dict)
    np.testing.assert_allclose(got[0], lr.predict_proba(X), atol=1e-12)
    np.testing.assert_allclose(got[1], knn.predict_proba(other), atol=1e-12)
    with pytest.raises(ValueError, match="pass X as a dict"):
        voter.predict_proba(X)
    with pytest.raises(ValueError, match="no input 'mfcc_seq'"):
        voter.predict_proba({"classic": X})
    with pytest.raises(ValueError, match="different numbers of rows"):
        voter.predict_proba({"classic": X, "mfcc_seq": other[:10]})


def test_pickle_round_trip_keeps_probabilities():
    X, y = _data()
    voter = SoftVoter(_members(), weights=[1, 2, 3]).fit(X, y)
    again = pickle.loads(pickle.dumps(voter))
    np.testing.assert_array_equal(again.predict_proba(X), voter.predict_proba(X))


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        normalize_weights([1, -1], 2)
    with pytest.raises(ValueError, match="all be zero"):
        normalize_weights([0, 0], 2)
    with pytest.raises(ValueError, match="2 values for 3"):
        normalize_weights([1, 1], 3)


# --- properties --------------------------------------------------------------------------------

_X, _Y = _data(seed=3, n=60)
_FITTED = SoftVoter(_members()).fit(_X, _Y)
_weights = st.lists(st.floats(0, 100, allow_nan=False), min_size=3, max_size=3).filter(
    lambda w: sum(w) > 1e-6
)


@settings(max_examples=40, deadline=None)
@given(w=_weights)
def test_voter_probabilities_sum_to_one(w):
    _FITTED.weights_ = normalize_weights(w, 3)  # the fitted members stay; only the weights vary
    proba = _FITTED.predict_proba(_X)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(w=_weights, factor=st.floats(1e-6, 1e6))
def test_scaling_all_weights_changes_nothing(w, factor):
    members = _FITTED.member_probas(_X)
    np.testing.assert_allclose(
        blend(members, np.asarray(w) * factor), blend(members, w), rtol=1e-12, atol=1e-15
    )


@st.composite
def _oof_problem(draw):
    n_classes = draw(st.integers(2, 5))
    n = draw(st.integers(4, 40))
    m = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    oof = []
    for _ in range(m):
        p = rng.dirichlet(np.full(n_classes, draw(st.sampled_from([0.3, 1.0, 5.0]))), size=n)
        skill = draw(st.floats(0, 2))
        p[np.arange(n), y] += skill * rng.random(n)  # members of varying skill
        oof.append(p / p.sum(axis=1, keepdims=True))
    return oof, y


@settings(max_examples=60, deadline=None)
@given(problem=_oof_problem(), metric=st.sampled_from(["uar", "accuracy"]), iterations=st.integers(1, 30))
def test_greedy_is_never_worse_than_its_best_member(problem, metric, iterations):
    oof, y = problem
    sel = greedy_selection(oof, y, metric=metric, iterations=iterations)
    best = max(score(metric, y, p.argmax(axis=1)) for p in oof)
    assert sel.member_scores[sel.best_member] == best
    blended = score(metric, y, blend(oof, sel.weights).argmax(axis=1))
    assert blended == sel.score
    assert blended >= best
    assert sel.counts.sum() >= 1 and np.isclose(sel.weights.sum(), 1.0)


def test_greedy_combines_complementary_members():
    # A is right on class 0 only, B on class 1 only; their mean is right everywhere.
    y = np.array([0] * 10 + [1] * 10)
    a = np.array([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 10)
    b = np.array([[0.4, 0.6]] * 10 + [[0.1, 0.9]] * 10)
    noise = np.full((20, 2), 0.5)
    sel = greedy_selection([a, noise, b], y, metric="accuracy", iterations=25)
    assert sel.member_scores == [0.5, 0.5, 0.5]
    assert sel.score == 1.0
    assert sel.counts[0] > 0 and sel.counts[2] > 0 and sel.counts[1] == 0


def test_greedy_keeps_a_perfect_member_alone():
    y = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[y] * 0.8 + 0.2 / 3
    wrong = np.eye(3)[(y + 1) % 3]
    sel = greedy_selection([wrong, perfect], y, iterations=20)
    assert sel.best_member == 1
    assert sel.counts.tolist() == [0, 1]
    assert sel.score == 1.0


def test_greedy_with_one_candidate():
    y = np.array([0, 1, 1])
    sel = greedy_selection([np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])], y, metric="accuracy")
    assert sel.counts.tolist() == [1] and sel.weights.tolist() == [1.0]
    assert sel.score == pytest.approx(2 / 3)
