"""The space contract, run over every registered space (torch ones included), plus the shared helpers.

Each space: declarations are valid and match the static listing; ``suggest`` calls only ``trial.suggest_*``,
returns exactly the trial's params, JSON-clean, and is fast and reproducible; ``build(params)`` fits on
small real-ish data, ``predict_proba`` rows sum to 1 in ``classes_`` order, equal for equal seeds and
after a pickle round trip; an iterative ``fit`` reports steps below ``MAX_STEPS``, gives the same model as
a plain fit, and stops when ``report`` raises ``TrialPruned``.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

import numpy as np
import optuna
import pytest
from sklearn.base import clone

from emotune import spaces
from emotune.spaces._common import (
    CLASSIC_CHROMA,
    CLASSIC_MEL,
    CLASSIC_MFCC,
    CLASSIC_WIDTH,
    LogMel,
    argmax_accuracy,
    block_ends,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACES = spaces.names()
CLASSES = ["sad_female", "angry_male", "calm_female", "happy_male", "fearful_female", "neutral_male"]
ROWS_PER_CLASS = 10
DRAWS = 3  # param sets per space, drawn with seeded random samplers so conditional branches get covered
SIZE_CAP = 64  # int params (and numeric choices) reaching above this are held at their minimum,
BUDGET_WORDS = ("epoch", "estimators", "iter", "rounds")  # and so are training budgets of any range


def _shape(feature_set: str) -> tuple[int, ...]:
    """One file's array shape for a feature set, at its default parameters."""
    from emotune.features import feature_columns, feature_params
    from emotune.features._sets import feature_shape

    if feature_set == "vgg16_bottleneck":  # its params need a weights file's sha256; its shape does not
        return feature_shape(feature_params(feature_set, weights_sha256="0" * 64))
    if feature_set == "ssl":  # its params describe a model; 4 hidden states of width 8, as mean and std
        model = {
            "model": "m",
            "family": "wavlm",
            "weights": "0" * 64,
            "config": "0" * 32,
            "layers": 4,
            "dim": 8,
        }
        return feature_shape(feature_params(feature_set, **model))
    if feature_set in ("classic", "classic_stats", "functionals"):
        return (len(feature_columns(feature_set)),)
    params = feature_params(feature_set)
    if feature_set == "mfcc_seq":
        return (params["n_mfcc"], params["frames"])
    return tuple(params["size"])


def _dataset(feature_set: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """60 float32 rows of 6 string classes, shuffled, with a class signal; `classic` laid out as the real set
    (MFCC means ~N(0, 20^2), chroma in [0, 1], mel-band powers spanning decades)."""
    rng = np.random.default_rng(seed)
    codes = rng.permutation(np.repeat(np.arange(len(CLASSES)), ROWS_PER_CLASS))
    shape = _shape(feature_set)
    width = int(np.prod(shape))
    centres = rng.normal(size=(len(CLASSES), width))
    z = centres[codes] + rng.normal(size=(len(codes), width))
    if feature_set == "classic":
        X = np.empty_like(z)
        X[:, :40] = 20.0 * z[:, :40]
        X[:, 40:52] = 1.0 / (1.0 + np.exp(-z[:, 40:52]))
        X[:, CLASSIC_MEL] = np.exp(2.0 * z[:, CLASSIC_MEL] - 6.0)
    elif feature_set == "melspec":
        X = np.clip(10.0 * z - 40.0, -80.0, 0.0)  # dB below the file's peak
    else:
        X = 10.0 * z
    return X.reshape(len(codes), *shape).astype(np.float32), np.asarray(CLASSES, dtype=object)[codes]


class _SmallSampler(optuna.samplers.BaseSampler):
    """A seeded random sampler that holds size and budget params at their minimum, to keep fits small."""

    def __init__(self, seed: int) -> None:
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        if isinstance(distribution, optuna.distributions.IntDistribution) and (
            distribution.high > SIZE_CAP or any(word in name for word in BUDGET_WORDS)
        ):
            return distribution.low
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            numbers = [
                c for c in distribution.choices if isinstance(c, int | float) and not isinstance(c, bool)
            ]
            if numbers and len(numbers) == len(distribution.choices) and max(numbers) > SIZE_CAP:
                return min(numbers)
        return self._random.sample_independent(study, trial, name, distribution)


class _SuggestOnly:
    """Lets ``suggest`` reach ``trial.suggest_*`` and nothing else (no report, attrs, number, study...)."""

    def __init__(self, trial: optuna.trial.BaseTrial) -> None:
        self._trial = trial

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("suggest_"):
            return getattr(self._trial, attr)
        raise AssertionError(f"suggest() used trial.{attr}; it may only call trial.suggest_*")


def _suggested(module: Any, sampler: optuna.samplers.BaseSampler) -> dict[str, Any]:
    trial = optuna.create_study(sampler=sampler, direction="maximize").ask()
    params = module.suggest(_SuggestOnly(trial))
    assert params == trial.params, "suggest() must return exactly the params it suggested"
    return params


def _assert_probabilities(estimator: Any, X: np.ndarray, proba: np.ndarray) -> None:
    classes = np.asarray(estimator.classes_)
    assert list(classes) == sorted(CLASSES)
    assert proba.shape == (len(X), len(CLASSES))
    assert np.all(np.isfinite(proba)) and proba.min() >= 0.0 and proba.max() <= 1.0 + 1e-9
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(estimator.predict(X), classes[np.argmax(proba, axis=1)])


# --- every space -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPACES)
def test_declarations(name: str) -> None:
    from emotune.features import FEATURE_SETS

    module = spaces.get(name)
    described = spaces.describe(module)
    assert described == spaces.describe(name), "the static listing must match the imported module"
    assert described["name"] == name
    assert described["features"] in FEATURE_SETS
    assert described["resources"].get("num_cpus", 0) > 0
    assert isinstance(described["max_steps"], int) and described["max_steps"] >= 1
    assert described["summary"], "the module docstring's first line is the listing's summary"
    if hasattr(module, "pruner"):
        assert isinstance(module.pruner(), optuna.pruners.BasePruner)
    if hasattr(module, "fit"):
        assert described["max_steps"] > 1, "an iterative fit reports more than one step"


@pytest.mark.parametrize("name", SPACES)
def test_suggest_is_pure_fast_and_reproducible(name: str) -> None:
    module = spaces.get(name)
    runs = []
    for _ in range(2):
        sampler = optuna.samplers.RandomSampler(seed=7)
        study = optuna.create_study(sampler=sampler, direction="maximize")
        drawn, spent = [], 0.0
        for _ in range(20):
            trial = study.ask()
            start = time.process_time()  # CPU time: other jobs on the machine do not count
            params = module.suggest(_SuggestOnly(trial))
            spent += time.process_time() - start
            assert params == trial.params, "suggest() must return exactly the params it suggested"
            assert json.loads(json.dumps(params)) == params, f"params are not JSON-clean: {params}"
            study.tell(trial, 0.0)
            drawn.append(params)
        assert spent / 20 < 0.05, f"suggest() takes {spent / 20 * 1e3:.1f} ms per call"
        runs.append(drawn)
    assert runs[0] == runs[1], "same sampler seed, different params"
    for params in runs[0]:
        assert module.suggest(optuna.trial.FixedTrial(params)) == params


def _fit_cases() -> list[Any]:
    return [pytest.param(name, draw, id=f"{name}-{draw}") for name in SPACES for draw in range(DRAWS)]


@pytest.mark.parametrize(("name", "draw"), _fit_cases())
def test_build_fits_and_predicts_probabilities(name: str, draw: int) -> None:
    module = spaces.get(name)
    params = _suggested(module, _SmallSampler(seed=draw))
    X, y = _dataset(spaces.describe(module)["features"], seed=draw)
    fit_X, fit_y, X_new = X[:48], y[:48], X[48:]
    fit_y[: len(CLASSES)] = CLASSES  # every class present in the fitted part

    unfitted = module.build(params, seed=3, n_classes=len(CLASSES))
    clone(unfitted)  # scikit-learn compatible: ensembles refit clones
    estimator = unfitted.fit(fit_X, fit_y)
    proba = estimator.predict_proba(X_new)
    _assert_probabilities(estimator, X_new, proba)

    again = module.build(params, seed=3, n_classes=len(CLASSES)).fit(fit_X, fit_y)
    np.testing.assert_allclose(
        again.predict_proba(X_new), proba, rtol=0, atol=1e-7, err_msg="not deterministic"
    )

    restored = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_allclose(restored.predict_proba(X_new), proba, rtol=0, atol=1e-7)


ITERATIVE = [name for name in SPACES if hasattr(spaces.get(name), "fit")]


@pytest.mark.parametrize("name", ITERATIVE)
def test_iterative_fit_reports_and_prunes(name: str) -> None:
    module = spaces.get(name)
    params = _suggested(module, _SmallSampler(seed=0))
    X, y = _dataset(spaces.describe(module)["features"])
    y[: len(CLASSES)] = CLASSES
    X_fit, y_fit, X_val, y_val = X[:45], y[:45], X[45:], y[45:]

    reports: list[tuple[int, float]] = []
    fitted = module.fit(
        module.build(params, seed=1),
        X_fit,
        y_fit,
        X_val=X_val,
        y_val=y_val,
        report=lambda s, v: reports.append((s, v)),
    )
    steps = [step for step, _ in reports]
    assert steps and all(isinstance(s, int) and 0 <= s < module.MAX_STEPS for s in steps)
    assert steps == sorted(set(steps)), f"steps must increase: {steps}"
    assert all(np.isfinite(v) for _, v in reports)
    proba = fitted.predict_proba(X_val)
    _assert_probabilities(fitted, X_val, proba)
    plain = module.build(params, seed=1).fit(X_fit, y_fit)
    np.testing.assert_allclose(
        proba, plain.predict_proba(X_val), rtol=0, atol=1e-7, err_msg="fit() != build().fit()"
    )

    calls = []

    def prune(step: int, value: float) -> None:
        calls.append(step)
        raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        module.fit(module.build(params, seed=1), X_fit, y_fit, X_val=X_val, y_val=y_val, report=prune)
    assert len(calls) == 1, "training went on after report() raised TrialPruned"


# --- shared helpers --------------------------------------------------------------------------------------


def test_log_mel_logs_only_the_classic_mel_block() -> None:
    X, _ = _dataset("classic")
    out = LogMel().fit(X).transform(X)
    np.testing.assert_allclose(out[:, CLASSIC_MEL], np.log(X[:, CLASSIC_MEL].astype(np.float64)), rtol=1e-6)
    np.testing.assert_array_equal(out[:, :52], X[:, :52].astype(np.float64))
    zeros = np.zeros((2, 180))
    assert np.all(LogMel(floor=1e-10).fit(zeros).transform(zeros)[:, CLASSIC_MEL] == np.log(1e-10))
    other = np.abs(np.random.default_rng(0).normal(size=(5, 200)))
    np.testing.assert_array_equal(LogMel().fit(other).transform(other), other)  # unknown layout: untouched


def test_classic_layout_matches_the_feature_set() -> None:
    from emotune.features import feature_columns

    columns = feature_columns("classic")
    assert len(columns) == CLASSIC_WIDTH
    assert all(c.startswith("mfcc_mean_") for c in columns[CLASSIC_MFCC])
    assert all(c.startswith("chroma_mean_") for c in columns[CLASSIC_CHROMA])
    assert all(c.startswith("mel_mean_") for c in columns[CLASSIC_MEL])


def test_block_ends_cover_every_step_and_end_at_the_last_round() -> None:
    assert block_ends(100, 10) == {10 * (i + 1): i for i in range(10)}
    ends = block_ends(57, 10)
    assert sorted(ends.values()) == list(range(10)) and max(ends) == 57
    ends = block_ends(3, 10)
    assert max(ends) == 3 and all(0 <= s < 10 for s in ends.values())


def test_accuracy_reads_columns_in_class_order() -> None:
    classes = np.array(["a", "b", "c"])
    proba = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]])
    assert argmax_accuracy(proba, classes, ["b", "a"]) == 1.0
    assert (
        argmax_accuracy(np.array([0.9, 0.2]), np.array(["x", "y"]), ["y", "x"]) == 1.0
    )  # binary: P(classes[1])


@pytest.mark.parametrize("name", SPACES)
def test_pruner_is_picklable(name: str) -> None:
    module = spaces.get(name)
    if not hasattr(module, "pruner"):
        pytest.skip(f"{name} uses the search's default pruner")
    pruner = module.pruner()
    again = pickle.loads(pickle.dumps(pruner))  # workers may receive it through Ray
    assert type(again) is type(pruner)
    step = max(2, int(module.MAX_STEPS) // 10)  # past the boosting warm-up and the first epoch rung
    decisions = _pruning_decisions(pruner, step)
    assert decisions == [False, True, False], f"{name}: a good, a hopeless, a good trial at step {step}"
    assert _pruning_decisions(again, step) == decisions


def _pruning_decisions(pruner: optuna.pruners.BasePruner, step: int) -> list[bool]:
    """``should_prune`` at ``step`` of three running trials (good, hopeless, good), after six finished ones.

    Each finished trial reports 0.50 + 0.05 i at every step up to ``step`` and asks the pruner there
    (successive halving records its rung values when asked).
    """
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(6):
        trial = study.ask()
        for s in range(step + 1):
            trial.report(0.50 + 0.05 * i, s)
        trial.should_prune()
        study.tell(trial, 0.50 + 0.05 * i)
    decisions = []
    for value in (0.95, 0.10, 0.90):
        trial = study.ask()
        for s in range(step + 1):
            trial.report(value, s)
        decisions.append(trial.should_prune())
    return decisions
