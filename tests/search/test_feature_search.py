"""The feature set as part of what a study searches, on the four real RAVDESS actors."""

from __future__ import annotations

import json
import uuid
import warnings

import optuna
import pytest

from emotune.features import score
from emotune.search import _search
from emotune.search._data import feature_sets
from emotune.search._export import delete_study, export_best
from emotune.search._objective import captured_warnings, summarize_warnings
from emotune.search._study import StudyError
from emotune.search.vote._ensemble import open_studies, top_candidates
from emotune.spaces import get


def test_classical_spaces_default_to_the_functionals_and_accept_the_seed_means():
    for name in ("knn", "logreg", "svm", "mlp", "rf", "dtree", "xgb", "lgbm"):
        space = get(name)
        assert space.FEATURES == "functionals" and {"classic", "classic_stats"} <= set(space.ACCEPTS), name
    assert feature_sets(get("knn"), None) == ["functionals"]
    assert feature_sets(get("knn"), "classic") == ["classic"]
    assert feature_sets(get("knn"), "all") == ["functionals", "classic_stats", "classic"]
    assert feature_sets(get("knn"), "classic, classic_stats") == ["classic", "classic_stats"]
    with pytest.raises(
        StudyError, match=r"--features mfcc_seq: space knn accepts functionals, classic_stats, classic"
    ):
        feature_sets(get("knn"), "mfcc_seq")


@pytest.fixture(scope="module")
def searched(pg_url, ray_address, feature_cache, ravdess):
    name = f"test-fsearch-{uuid.uuid4().hex[:8]}"
    try:
        prep = _search.prepare(
            "knn",
            name,
            [ravdess],
            url=pg_url,
            feature_set="classic_stats,classic",
            cache_dir=feature_cache,
            ray_address=ray_address,
            progress=False,
        )
        _search.run(prep, n_trials=8, workers=2, ray_address=ray_address, progress=False, sampler="random")
        yield name, prep
    finally:
        delete_study(pg_url, name)


def test_each_trial_is_fed_the_matrix_of_the_set_it_chose(searched, pg_url):
    name, prep = searched
    assert sorted(prep.spec.feature_choices) == ["classic", "classic_stats"]
    widths = {k: v.shape[1] for k, v in (prep.trial_data.X_by_set or {}).items()}
    assert widths == {"classic": 180, "classic_stats": 479}
    opened = open_studies(pg_url, [name])[0]
    trials = opened.study.get_trials(deepcopy=False)
    chosen = {t.params["features"] for t in trials}
    assert chosen <= {"classic", "classic_stats"} and len(trials) == 8
    # A trial's score is the score of its own set: rebuild one trial of each set and compare folds.
    for t in trials:
        if t.state.name != "COMPLETE":
            continue
        spec = opened.spec.for_trial(t.params)
        assert spec.feature_set == t.params["features"] and not spec.feature_choices
        X = prep.trial_data.X_by_set[spec.feature_set]
        space = get("knn")
        params = space.suggest(
            __import__("optuna").trial.FixedTrial({k: v for k, v in t.params.items() if k != "features"})
        )
        tr, va = prep.trial_data.folds[0]
        est = space.build(params, seed=0).fit(X[tr], prep.trial_data.y[tr])
        fold0 = score("uar", prep.trial_data.y[va], est.predict(X[va]))
        assert fold0 == pytest.approx(t.user_attrs["fold_scores"][0], abs=1e-6)


def test_ensemble_and_export_use_each_trials_set(searched, pg_url):
    name, _ = searched
    opened = open_studies(pg_url, [name])
    candidates = top_candidates(pg_url, opened[0], 8, progress=False)
    for c in candidates:
        trial = opened[0].study.trials[c.trial]
        assert c.spec.feature_set == trial.params["features"] and "features" not in c.params
    doc = export_best(pg_url, name)
    best = opened[0].study.best_trial
    assert doc["feature_set"] == best.params["features"]
    json.dumps(doc)


def test_a_resumed_study_must_search_the_same_sets(searched, pg_url, feature_cache, ray_address, ravdess):
    name, _ = searched
    with pytest.raises(StudyError, match="searches feature sets"):
        _search.prepare(
            "knn", name, [ravdess], url=pg_url, feature_set="classic_stats", cache_dir=feature_cache,
            ray_address=ray_address, progress=False,
        )  # fmt: skip


def test_search_cli_lists_accepted_sets_and_refuses_others(run_cli, ravdess, pg_url, search_env):
    listing = run_cli("spaces", "--json", check=True)
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["svm"]["accepts"] == ["functionals", "classic_stats", "classic"] and rows["spec_cnn"][
        "accepts"
    ] == ["melspec"]
    bad = run_cli("search", "knn", "--study", "never-made", "--data", ravdess, "--trials", "1",
                  "--features", "melspec", "--storage", pg_url, env=search_env)  # fmt: skip
    assert (
        bad.returncode == 1
        and "--features melspec: space knn accepts functionals, classic_stats, classic" in bad.stderr
    )
    assert len(bad.stderr.strip().splitlines()) == 1


def test_trial_warnings_go_to_the_trial_record_not_the_terminal(pg_url, ray_address, feature_cache, ravdess):

    with captured_warnings() as caught:
        for _ in range(3):
            warnings.warn("did not converge", UserWarning, stacklevel=1)
        warnings.warn("other", RuntimeWarning, stacklevel=1)
    assert summarize_warnings(caught) == ["UserWarning: did not converge (x3)", "RuntimeWarning: other"]


@pytest.mark.parametrize("name", ["logreg", "svm", "mlp"])
def test_space_defaults_are_points_of_the_space(name):
    space = get(name)
    for params in space.DEFAULTS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # out of range or not a choice: an error, not a warning
            assert space.suggest(optuna.trial.FixedTrial(params)) == params
        space.build(params, seed=0)


def test_a_new_study_runs_the_space_defaults_first(pg_url, ray_address, feature_cache, ravdess):
    name = f"test-defaults-{uuid.uuid4().hex[:8]}"
    try:
        prep = _search.prepare(
            "logreg", name, [ravdess], url=pg_url, feature_set="all", cache_dir=feature_cache,
            ray_address=ray_address, progress=False,
        )  # fmt: skip
        _search.run(prep, n_trials=2, workers=1, ray_address=ray_address, progress=False)
        first = open_studies(pg_url, [name])[0].study.trials[0]
        assert first.params == {**get("logreg").DEFAULTS[0], "features": "functionals"}
        assert len(open_studies(pg_url, [name])[0].study.trials) == 2  # still exactly N
    finally:
        delete_study(pg_url, name)
