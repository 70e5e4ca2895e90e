"""Studies run by real Ray workers on the machine's real PostgreSQL, on the real RAVDESS files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from emotune.search._storage import normalize_url

EMOTUNE = str(Path(sys.executable).parent / "emotune")
SLOW_SPACE = str(Path(__file__).with_name("slow_space.py"))
S = optuna.trial.TrialState


def _study(pg_url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=normalize_url(pg_url))


def _counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {
        s.name: sum(t.state == s for t in trials)
        for s in (S.COMPLETE, S.PRUNED, S.FAIL, S.RUNNING, S.WAITING)
    }


def _search(
    *args: str, env: dict[str, str], cache: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    cmd = [EMOTUNE, "search", *args, "--cache", str(cache)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("emotune: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _search_logreg(name: str, pg_url: str, ravdess: Path, env: dict[str, str], cache: Path):
    args = ("logreg", "--study", name, "--data", str(ravdess), "--trials", "8", "--workers", "2")
    return _search(*args, "--storage", pg_url, env=env, cache=cache)


@pytest.fixture(scope="module")
def searched(pg_url, ravdess, feature_cache, search_env) -> Iterator[tuple[str, optuna.Study]]:
    """One CLI search: logreg, 8 trials, 2 workers, on the four RAVDESS actors; its name and study."""
    name = f"test-search-{uuid.uuid4().hex[:10]}"
    proc = _search_logreg(name, pg_url, ravdess, search_env, feature_cache)
    try:
        assert proc.returncode == 0, proc.stderr
        yield name, _study(pg_url, name)
    finally:
        if name in optuna.get_all_study_names(normalize_url(pg_url)):
            optuna.delete_study(study_name=name, storage=normalize_url(pg_url))


def test_two_workers_finish_exactly_n_trials(searched):
    _, study = searched
    counts = _counts(study)
    assert counts["COMPLETE"] + counts["PRUNED"] == 8
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 0
    finished = [t for t in study.trials if t.state in (S.COMPLETE, S.PRUNED)]
    assert len({t.user_attrs["worker"] for t in finished}) == 2, "both workers must do work"


def test_the_study_records_its_settings(searched):
    attrs = searched[1].user_attrs
    assert attrs["space"] == "logreg" and attrs["protocol"] == "actor" and attrs["metric"] == "uar"
    assert attrs["feature_set"] == "functionals" and attrs["classes"][0] == "neutral"


def test_every_complete_trial_records_its_scores(searched):
    for t in searched[1].get_trials(states=(S.COMPLETE,)):
        assert 0.0 <= t.user_attrs["uar"] <= 1.0 and 0.0 <= t.user_attrs["accuracy"] <= 1.0
        assert len(t.user_attrs["fold_scores"]) == 3  # 4 actors: 1 held out, 3 folds
        assert t.user_attrs["fit_time_s"] > 0 and "train_score" in t.user_attrs
        assert t.value == pytest.approx(sum(t.user_attrs["fold_scores"]) / 3, abs=1e-5)


def test_out_of_fold_probabilities_go_to_the_blob_store(searched, pg_url):
    from emotune.search._search import load_oof, open_study

    name, study = searched
    _, _, data = open_study(normalize_url(pg_url), name)
    assert len(data.test_index) == 60 and len({data.rows[i]["speaker"] for i in data.test_index}) == 1
    best = study.best_trial
    oof = load_oof(normalize_url(pg_url), name, best.number)
    assert oof is not None and oof.shape == (180, 8)
    assert abs(oof.sum(axis=1) - 1).max() < 1e-4
    assert "oof" not in json.dumps(best.user_attrs)


def test_running_it_again_resumes_without_new_trials(searched, pg_url, ravdess, feature_cache, search_env):
    name, study = searched
    again = _search_logreg(name, pg_url, ravdess, search_env, feature_cache)
    assert again.returncode == 0, again.stderr
    assert len(_study(pg_url, name).trials) == len(study.trials)  # it already holds 8


def test_export_writes_the_best_trial(searched, pg_url, tmp_path):
    name, study = searched
    out = tmp_path / f"{name}.json"
    exp = subprocess.run(
        [EMOTUNE, "export", name, "--storage", pg_url, "--out", str(out)], capture_output=True, text=True
    )
    assert exp.returncode == 0, exp.stderr
    doc = json.loads(out.read_text())
    keys = ("study", "space", "feature_set", "target", "protocol", "metric", "value", "params", "trial")
    assert set(keys) | {"fold_scores", "versions"} <= set(doc)
    best = study.best_trial
    assert doc["trial"] == best.number and doc["value"] == pytest.approx(best.value)
    assert doc["params"] == best.params and doc["versions"]["optuna"] == optuna.__version__


def test_studies_lists_it(searched, pg_url):
    listed = subprocess.run(
        [EMOTUNE, "studies", "--storage", pg_url, "--json"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["study"] == searched[0])
    assert row["space"] == "logreg" and row["complete"] + row["pruned"] == 8 and row["running"] == 0


def test_studies_delete_removes_it(make_study, pg_url):
    name = f"test-delete-{uuid.uuid4().hex[:10]}"
    make_study("logreg", name, trials=0)
    deleted = subprocess.run(
        [EMOTUNE, "studies", "delete", name, "--storage", pg_url], capture_output=True, text=True
    )
    assert deleted.returncode == 0, deleted.stderr
    assert name not in optuna.get_all_study_names(normalize_url(pg_url))


def test_same_seed_one_worker_gives_the_same_trials(pg_url, ravdess, feature_cache, search_env, study_name):
    names = [study_name, study_name + "-b"]
    try:
        for name in names:
            proc = _search(
                "knn",
                "--study",
                name,
                "--data",
                str(ravdess),
                "--trials",
                "5",
                "--workers",
                "1",
                "--storage",
                pg_url,
                "--seed",
                "7",
                "--pruner",
                "none",
                env=search_env,
                cache=feature_cache,
            )
            assert proc.returncode == 0, proc.stderr
        a, b = (_study(pg_url, n) for n in names)
        assert [t.params for t in a.trials] == [t.params for t in b.trials]
        assert [t.value for t in a.trials] == pytest.approx([t.value for t in b.trials])
    finally:
        optuna.delete_study(study_name=names[1], storage=normalize_url(pg_url))


def _slow_search(
    name: str, ravdess: Path, pg_url: str, cache: Path, *, trials: int, workers: int
) -> list[str]:
    """The command line of a search of the slow test space (1.5 s a fold), unpruned."""
    return [EMOTUNE, "search", SLOW_SPACE, "--study", name, "--data", str(ravdess), "--trials", str(trials),
            "--workers", str(workers), "--storage", pg_url, "--pruner", "none", "--cache", str(cache)]  # fmt: skip


def _wait_for(predicate, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _running_trial(pg_url: str, name: str):
    try:
        study = _study(pg_url, name)
    except KeyError:
        return None
    # A trial killed before its first suggest has no params to retry (its retry samples afresh):
    # pick one that has them.
    running = [t for t in study.get_trials(states=(S.RUNNING,)) if "worker" in t.user_attrs and t.params]
    return running[0] if running else None


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # retried_trial_number
def test_kill_9_of_a_worker_mid_trial_is_retried_with_its_params(
    pg_url, study_name, ravdess, feature_cache, search_env
):
    cmd = _slow_search(study_name, ravdess, pg_url, feature_cache, trials=5, workers=2)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=search_env)
    try:
        victim = _wait_for(lambda: _running_trial(pg_url, study_name), 120, "a running trial")
        pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    study = _study(pg_url, study_name)
    counts = _counts(study)
    assert counts["COMPLETE"] + counts["PRUNED"] == 5
    assert counts["RUNNING"] == 0
    killed = study.trials[victim.number]
    assert killed.state == S.FAIL
    retries = [t for t in study.trials if t.number != killed.number and t.params == killed.params]
    assert retries and any(t.state in (S.COMPLETE, S.PRUNED) for t in retries)
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    assert any(retried(t) == killed.number for t in retries)  # Optuna's own record of the retry


def test_sigint_stops_within_seconds_and_rerun_reaches_n(
    pg_url, study_name, ravdess, feature_cache, search_env
):
    cmd = _slow_search(study_name, ravdess, pg_url, feature_cache, trials=6, workers=2)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=search_env)
    try:
        _wait_for(lambda: _running_trial(pg_url, study_name), 120, "a running trial")
        t0 = time.time()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        stopped_in = time.time() - t0
    finally:
        proc.kill()
    assert stopped_in < 15, f"took {stopped_in:.1f} s to stop"
    assert proc.returncode == 130, err
    counts = _counts(_study(pg_url, study_name))
    assert counts["RUNNING"] == 0
    assert counts["COMPLETE"] + counts["PRUNED"] < 6
    again = subprocess.run(cmd, capture_output=True, text=True, env=search_env, timeout=300)
    assert again.returncode == 0, again.stderr
    counts = _counts(_study(pg_url, study_name))
    assert counts["COMPLETE"] + counts["PRUNED"] == 6 and counts["RUNNING"] == 0


def test_two_search_processes_on_one_study_reach_exactly_n(
    pg_url, study_name, ravdess, feature_cache, search_env
):
    cmd = _slow_search(study_name, ravdess, pg_url, feature_cache, trials=5, workers=1)
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=search_env)
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    study = _study(pg_url, study_name)
    counts = _counts(study)
    assert counts["COMPLETE"] + counts["PRUNED"] == 5 and counts["RUNNING"] == 0
    assert len({t.user_attrs["worker"] for t in study.get_trials(states=(S.COMPLETE,))}) == 2


def test_user_errors_are_one_line(pg_url, study_name, ravdess, feature_cache, search_env):
    base = ["--study", study_name, "--data", str(ravdess), "--trials", "2"]
    line = _one_line_error(
        _search("nosuchspace", *base, "--storage", pg_url, env=search_env, cache=feature_cache)
    )
    assert "nosuchspace" in line and "logreg" in line
    line = _one_line_error(
        _search(
            "logreg", *base, "--storage", "mysql://root@127.0.0.1/test", env=search_env, cache=feature_cache
        )
    )
    assert "mysql" in line
    line = _one_line_error(
        _search(
            "logreg",
            *base,
            "--storage",
            "postgresql://postgres:secret@127.0.0.1:1/test",
            env=search_env,
            cache=feature_cache,
        )
    )
    assert "127.0.0.1" in line and "secret" not in line
    ok = _search("logreg", *base, "--storage", pg_url, env=search_env, cache=feature_cache)
    assert ok.returncode == 0, ok.stderr
    line = _one_line_error(
        _search(
            "logreg", *base, "--storage", pg_url, "--target", "emotion6", env=search_env, cache=feature_cache
        )
    )
    assert "target" in line
    line = _one_line_error(_search("knn", *base, "--storage", pg_url, env=search_env, cache=feature_cache))
    assert "space" in line
    line = _one_line_error(
        _search(
            "logreg", *base, "--storage", pg_url, "--protocol", "random", env=search_env, cache=feature_cache
        )
    )
    assert "protocol" in line
    other = [
        "--study",
        study_name,
        "--data",
        str(ravdess / "Actor_01"),
        str(ravdess / "Actor_02"),
        str(ravdess / "Actor_03"),
        "--trials",
        "2",
    ]
    line = _one_line_error(
        _search("logreg", *other, "--storage", pg_url, env=search_env, cache=feature_cache)
    )
    assert "dataset" in line


def test_url_normalisation():
    assert normalize_url("postgresql://u@h:5432/db") == "postgresql+psycopg2://u@h:5432/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert normalize_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"
    from emotune.search._storage import StorageError

    with pytest.raises(StorageError, match="not PostgreSQL"):
        normalize_url("sqlite:///x.db")
