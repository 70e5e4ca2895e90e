"""The ``ssl_head`` space: a softmax weighting of an encoder's pooled layers, then a small dense head."""

from __future__ import annotations

import pickle

import numpy as np
import optuna
import pytest

from emotune.spaces import get
from emotune.spaces._ssl_view import LayerView, StackScaler, build_viewed, layer_weights


def _stacks(seed: int = 0, n: int = 240, layers: int = 5, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Stacks whose class shows in layer 3's means only; every other layer and every std is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = rng.normal(size=(n, layers, 2 * dim))
    X[:, 3, :dim] += 3.0 * np.eye(3, dim)[y]
    return X.astype(np.float32), y


def test_the_head_learns_to_weigh_the_layer_that_holds_the_signal():
    space = get("ssl_head")
    assert space.FEATURES == "ssl" and space.MAX_STEPS == 30
    X, y = _stacks()
    params = {**space.DEFAULTS[0], "epochs": 30, "pooling": "mean"}
    model = space.build(params, seed=0).fit(X[:180], y[:180])
    weights = layer_weights(model)
    assert weights.shape == (5,) and abs(weights.sum() - 1) < 1e-6 and int(np.argmax(weights)) == 3
    proba = model.predict_proba(X[180:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (proba.argmax(axis=1) == y[180:]).mean() > 0.8
    again = pickle.loads(pickle.dumps(model))  # a model directory holds it pickled
    np.testing.assert_allclose(again.predict_proba(X[180:]), proba, rtol=1e-6)


def test_its_pooling_is_its_own_param_not_a_layer_view():
    space = get("ssl_head")
    trial = optuna.trial.FixedTrial({**space.DEFAULTS[0], "pooling": "mean"})
    params = space.suggest(trial)
    built = build_viewed(space, params, seed=0)
    assert not isinstance(built, LayerView) and built.net.pooling == "mean"


def test_a_flat_space_on_a_stack_reads_the_trial_layer_through_a_view():
    X, y = _stacks()
    view = build_viewed(get("logreg"), {**get("logreg").DEFAULTS[0], "layer": 3, "pooling": "mean"}, seed=0)
    assert isinstance(view, LayerView)
    view.fit(X[:180], y[:180])
    assert (view.predict(X[180:]) == y[180:]).mean() > 0.8
    noise = build_viewed(get("logreg"), {**get("logreg").DEFAULTS[0], "layer": 1, "pooling": "mean"}, seed=0)
    assert (noise.fit(X[:180], y[:180]).predict(X[180:]) == y[180:]).mean() < 0.6


def test_stack_scaler_standardises_every_element_and_checks_the_shape():
    X, _ = _stacks()
    Z = StackScaler().fit(X).transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match=r"fit on rows of shape \(5, 12\)"):
        StackScaler().fit(X).transform(X[:, :4])
