"""The objective: attribute recording on the real PostgreSQL."""

from __future__ import annotations

import optuna
import pytest

from emotune.search._objective import set_user_attrs
from emotune.search._storage import make_storage, normalize_url


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
