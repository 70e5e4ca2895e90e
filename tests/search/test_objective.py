"""The objective: make_objective on an in-memory study (scores, reports, pruning, attributes), and
attribute recording on the real PostgreSQL."""

from __future__ import annotations

import types
import warnings
from typing import Any

import numpy as np
import optuna
import pytest

from emotune.features import balanced_accuracy
from emotune.search._objective import (
    TrialData,
    TrialInterrupted,
    make_objective,
    oof_from_bytes,
    set_user_attrs,
    worker_id,
)
from emotune.search._storage import make_storage, normalize_url
from emotune.spaces import median_over_folds


def test_set_user_attrs_writes_every_key_in_one_transaction(pg_url, study_name):
    url = normalize_url(pg_url)
    storage = make_storage(url, heartbeat=False)
    study = optuna.create_study(study_name=study_name, storage=storage)
    backend = storage._backend if hasattr(storage, "_backend") else storage
    commits = []
    from sqlalchemy import event

    event.listen(backend.engine, "commit", lambda conn: commits.append(1))

    def objective(trial):
        trial.set_user_attr("worker", "here")
        commits.clear()
        set_user_attrs(trial, {"fold_scores": [0.5, 0.25], "uar": 0.375, "fit_time_s": 1.5})
        assert len(commits) == 1
        assert trial.user_attrs["uar"] == 0.375  # the running trial sees its own attributes
        return 0.0

    study.optimize(objective, n_trials=1)
    reloaded = optuna.load_study(study_name=study_name, storage=url).trials[0]
    assert reloaded.user_attrs == {
        "worker": "here",
        "fold_scores": [0.5, 0.25],
        "uar": 0.375,
        "fit_time_s": 1.5,
    }


def test_set_user_attrs_refuses_a_finished_trial_like_optuna(pg_url, study_name):
    storage = make_storage(normalize_url(pg_url), heartbeat=False)
    study = optuna.create_study(study_name=study_name, storage=storage)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError, match="finished"):
        set_user_attrs(trial, {"uar": 1.0})


def test_set_user_attrs_on_in_memory_storage():
    study = optuna.create_study()
    trial = study.ask()
    set_user_attrs(trial, {"a": 1, "b": [2, 3]})
    study.tell(trial, 0.0)
    assert study.trials[0].user_attrs == {"a": 1, "b": [2, 3]}


# --- make_objective, driven directly on an in-memory study ------------------------------------------------


def _plain_space(**extra: Any) -> types.ModuleType:
    """A plain space (one fit per fold): ``good`` picks 1-NN, else a majority-class dummy."""
    from sklearn.dummy import DummyClassifier
    from sklearn.neighbors import KNeighborsClassifier

    space = types.ModuleType("plain")
    space.NAME = "plain"
    space.suggest = lambda trial: {"good": trial.suggest_categorical("good", [True, False])}
    space.build = lambda params, *, seed, n_classes=None: (
        KNeighborsClassifier(1) if params["good"] else DummyClassifier(strategy="most_frequent")
    )
    space.__dict__.update(extra)
    return space


def _data() -> TrialData:
    """Three well-separated classes (60 rows, one unbalanced), three interleaved folds."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [30, 15, 15])
    X = rng.normal(size=(60, 4)) + 10.0 * y[:, None]
    folds = [
        (np.flatnonzero(np.arange(60) % 3 != k), np.flatnonzero(np.arange(60) % 3 == k)) for k in range(3)
    ]
    return TrialData(X=X, y=y, folds=folds, classes=["a", "b", "c"], hashes=[str(i) for i in range(60)])


def _optimize(space: types.ModuleType, pruner: optuna.pruners.BasePruner, goods: list[bool], **kw: Any):
    saved: dict[int, bytes] = {}
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for good in goods:
        study.enqueue_trial({"good": good})
    objective = make_objective(space, _data(), metric="uar", seed=0, save_oof=saved.__setitem__, **kw)
    study.optimize(objective, n_trials=len(goods))
    return study, saved


def test_objective_reports_running_means_and_records_the_trial() -> None:
    data = _data()
    study, saved = _optimize(_plain_space(), optuna.pruners.NopPruner(), [False])
    (trial,) = study.trials
    attrs = trial.user_attrs
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert attrs["worker"] == worker_id()
    folds = attrs["fold_scores"]  # rounded to 6 digits
    assert folds == pytest.approx([1 / 3] * 3)  # the majority class only: UAR of one class in three
    assert trial.value == pytest.approx(np.mean(folds), abs=1e-6)
    assert trial.intermediate_values == pytest.approx(
        {k: np.mean(folds[: k + 1]) for k in range(3)}, abs=1e-6
    )
    assert attrs["train_score"] == pytest.approx(1 / 3) and attrs["fit_time_s"] >= 0
    oof = oof_from_bytes(saved[trial.number])
    assert oof.shape == (60, 3) and np.allclose(oof.sum(axis=1), 1.0)
    assert attrs["uar"] == pytest.approx(balanced_accuracy(data.y, oof.argmax(axis=1)))
    assert attrs["accuracy"] == pytest.approx(0.5)  # 30 of 60 rows are the majority class
    assert "warnings" not in attrs


def test_objective_prunes_a_plain_space_after_its_first_fold() -> None:
    study, saved = _optimize(_plain_space(), median_over_folds(), [True] * 5 + [False])
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 5 + [optuna.trial.TrialState.PRUNED]
    pruned = study.trials[-1]
    assert list(pruned.intermediate_values) == [0]  # judged after fold 0, never fitted again
    assert pruned.user_attrs["fold_scores"] == pytest.approx([1 / 3])
    assert "uar" not in pruned.user_attrs  # pooled scores only for trials that ran every fold
    assert sorted(saved) == [0, 1, 2, 3, 4]  # out-of-fold probabilities of complete trials only


def test_objective_stops_between_folds_when_asked() -> None:
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # let the first fold run

    with pytest.raises(TrialInterrupted, match="trial 0 interrupted"):
        _optimize(_plain_space(), optuna.pruners.NopPruner(), [True], should_stop=should_stop)


def test_objective_keeps_library_warnings_in_the_trial() -> None:
    from sklearn.linear_model import LogisticRegression

    space = _plain_space(build=lambda params, *, seed, n_classes=None: LogisticRegression(max_iter=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may reach the caller
        study, _ = _optimize(space, optuna.pruners.NopPruner(), [True])
    (message,) = study.trials[0].user_attrs["warnings"]
    assert message.startswith("ConvergenceWarning: ") and message.endswith("(x3)")  # one per fold
