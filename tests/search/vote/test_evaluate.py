"""Nested evaluation: knn and logreg on tiny budgets over the four RAVDESS actors."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from browser import open_page

from emotune.search import _search
from emotune.search.vote import _evaluate as ev
from emotune.search.vote._evaluate import outer_folds


def test_outer_folds_actor_hold_out_whole_speakers_of_both_genders():
    speakers = [f"s{i}" for i in range(10)]
    genders = {s: ("male" if i % 2 else "female") for i, s in enumerate(speakers)}
    groups = [s for s in speakers for _ in range(6)]
    labels = ["a", "b", "c"] * 20
    hashes = [f"{i:04d}" for i in range(60)]
    folds = outer_folds(labels, groups, [genders[g] for g in groups], hashes, protocol="actor", k=5, seed=0)
    assert len(folds) == 5
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(60))  # a partition of the rows
    held = [{groups[i] for i in f} for f in folds]
    assert all(len(h) == 2 and {genders[s] for s in h} == {"male", "female"} for h in held)
    assert (
        outer_folds(labels, groups, [genders[g] for g in groups], hashes, protocol="actor", k=5, seed=0)[
            0
        ].tolist()
        == folds[0].tolist()
    )
    other = outer_folds(labels, groups, [genders[g] for g in groups], hashes, protocol="actor", k=5, seed=1)
    assert [f.tolist() for f in other] != [f.tolist() for f in folds]


def test_outer_folds_random_are_stratified():
    labels = ["a"] * 20 + ["b"] * 10
    folds = outer_folds(
        labels, ["x"] * 30, [None] * 30, [f"{i:03d}" for i in range(30)], protocol="random", k=5, seed=0
    )
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(30))
    assert all(sorted(labels[i] for i in f) == ["a"] * 4 + ["b"] * 2 for f in folds)


def test_nested_evaluation_never_lets_test_speakers_in(
    pg_url, ray_address, feature_cache, ravdess, monkeypatch
):
    seen: list[tuple[str, set[str]]] = []
    run = _search.run

    def spy(prep, **kw):
        seen.append((prep.name, {r["speaker"] for r in prep.data.rows}))
        assert len(prep.data.test_index) == 0  # inner studies: CV only
        return run(prep, **kw)

    monkeypatch.setattr(_search, "run", spy)
    result = ev.evaluate(
        [ravdess],
        ["knn", "logreg"],
        url=pg_url,
        outer=2,
        inner=2,
        trials=2,
        timeout=None,
        workers=2,
        top_k=2,
        speaker_norm=False,
        cache_dir=feature_cache,
        ray_address=ray_address,
        progress=False,
    )
    assert len(result.folds) == 2 and len(seen) == 4
    all_speakers = {f"ravdess:0{i}" for i in range(1, 5)}
    for fold in result.folds:
        held = set(fold.test_speakers)
        assert len(held) == 2 and fold.n_test == 120 and fold.n_train == 120
        assert {"ravdess:01", "ravdess:03"} & held and {"ravdess:02", "ravdess:04"} & held  # both genders
        for name, speakers in seen:
            if f"-f{fold.fold}-" in name:
                assert speakers == all_speakers - held
        assert [r["model"] for r in fold.rows] == ["knn", "logreg", "voter"]
        for r in fold.rows:
            assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["test_uar"] <= 1
        assert fold.trials["knn"]["complete"] + fold.trials["knn"]["pruned"] == 2
    assert set().union(*(set(f.test_speakers) for f in result.folds)) == all_speakers
    summary = {s["model"]: s for s in result.summary()}
    assert set(summary) == {"knn", "logreg", "voter"}
    voter_acc = [f.rows[-1]["test_accuracy"] for f in result.folds]
    assert summary["voter"]["accuracy_mean"] == pytest.approx(np.mean(voter_acc))
    assert summary["voter"]["accuracy_std"] == pytest.approx(np.std(voter_acc))
    # The temporary studies are gone.
    storage = optuna.storages.RDBStorage(pg_url.replace("postgresql://", "postgresql+psycopg2://"))
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert not {name for name, _ in seen} & names


def test_evaluate_cli(pg_url, ray_address, feature_cache, ravdess, run_cli, search_env, tmp_path):
    page = tmp_path / "evaluation.html"
    proc = run_cli(
        "evaluate",
        ravdess,
        "--spaces",
        "knn,logreg",
        "--outer-folds",
        "2",
        "--inner-folds",
        "2",
        "--trials",
        "1",
        "--workers",
        "2",
        "--protocol",
        "random",
        "--cache",
        feature_cache,
        "--storage",
        pg_url,
        "--json",
        "--report",
        page,
        env=search_env,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert f"wrote {page}" in proc.stderr
    load = open_page(page)  # summary, confusion matrices summed over folds, recall, voter weights
    assert load.errors == [] and len(load.images) >= 1 + 3 + 1 + 3, (load.errors, len(load.images))
    assert all(i["complete"] and i["width"] > 0 for i in load.images)
    assert doc["settings"]["protocol"] == "random" and doc["settings"]["outer_folds"] == 2
    # By default plain and speaker-normalised side by side, on the same folds; the voter keeps its name.
    assert [(s["model"], s["speaker_norm"]) for s in doc["summary"]] == [
        ("knn", False), ("logreg", False), ("voter", False), ("knn", True), ("logreg", True), ("voter", True)
    ]  # fmt: skip
    assert all(
        set(s["voter_kinds"]) <= {"greedy", "stacked"} for s in doc["summary"] if s["model"] == "voter"
    )
    assert len(doc["folds"]) == 2 and all(f["n_test"] == 120 for f in doc["folds"])
    for fold in doc["folds"]:
        assert sorted(r["speaker_norm"] for r in fold["rows"]) == [False] * 3 + [True] * 3
    assert "emotune:" in proc.stderr and "outer fold 2/2 done" in proc.stderr  # progress on stderr
    assert "ConvergenceWarning" not in proc.stderr  # library warnings stay in the trials' records
    bad = run_cli("evaluate", ravdess, "--spaces", "knn,nope", "--storage", pg_url, env=search_env)
    assert bad.returncode == 1 and "unknown space 'nope'" in bad.stderr
