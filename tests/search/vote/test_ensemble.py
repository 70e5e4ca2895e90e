"""Ensembles of real studies (knn + logreg on the four RAVDESS actors), on the machine's PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

from emotune.features import score
from emotune.search.vote import _modeldir as md
from emotune.search.vote._ensemble import open_studies, top_candidates
from emotune.search.vote._voter import blend, greedy_selection


@pytest.fixture(scope="module")
def studies(make_study):
    """Two searched studies on one split: knn and logreg, 5 trials each."""
    tag = uuid.uuid4().hex[:8]
    names = [f"test-ens-knn-{tag}", f"test-ens-logreg-{tag}"]
    for space, name in zip(("knn", "logreg"), names, strict=True):
        make_study(space, name, trials=5)
    return names


def _train_codes(opened):
    first = opened[0]
    code = {c: i for i, c in enumerate(first.spec.classes)}
    return np.array([code[first.data.labels[i]] for i in first.data.train_index])


@pytest.mark.parametrize("metric", ["uar", "accuracy"])
def test_voter_is_never_worse_on_out_of_fold_data_than_its_best_member(studies, pg_url, metric):
    opened = open_studies(pg_url, studies)
    candidates = [c for o in opened for c in top_candidates(pg_url, o, 5, progress=False)]
    assert len(candidates) >= 4 and {c.spec.space for c in candidates} == {"knn", "logreg"}
    y = _train_codes(opened)
    for c in candidates:  # the stored OOF is the trial's own: it reproduces its recorded score
        trial = next(t for o in opened if o.name == c.study for t in o.study.trials if t.number == c.trial)
        assert score("uar", y, c.oof.argmax(axis=1)) == pytest.approx(trial.user_attrs["uar"], abs=1e-9)
    oof = [c.oof for c in candidates]
    sel = greedy_selection(oof, y, metric=metric, iterations=50)
    best = max(score(metric, y, p.argmax(axis=1)) for p in oof)
    assert score(metric, y, blend(oof, sel.weights).argmax(axis=1)) == sel.score >= best


def test_ensemble_writes_a_model_directory(studies, pg_url, feature_cache, run_cli, tmp_path, ravdess):
    out = tmp_path / "model"
    proc = run_cli("ensemble", *studies, "--storage", pg_url, "--out", out, "--cache", feature_cache)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for header in ("model", "weight", "train acc", "CV acc", "CV UAR", "test acc", "test UAR"):
        assert header in text
    assert "\nvoter " in text
    assert "confusion matrix" in text and "surprised" in text and "true \\ predicted" in text

    manifest = md.verify(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png",
        "manifest.json",
        "report.html",
        "voter.joblib",
    ]
    for name, digest in manifest["files"].items():
        assert md.sha256_file(out / name) == digest
    assert manifest["target"] == "emotion" and manifest["protocol"] == "actor"
    assert manifest["classes"][:3] == ["neutral", "calm", "happy"]
    assert manifest["studies"] == studies
    assert manifest["speaker_norm"] is False
    assert {"scikit-learn", "numpy", "optuna"} <= set(manifest["versions"])
    members = manifest["members"]
    assert members and abs(sum(m["weight"] for m in members) - 1) < 1e-9
    for m in members:
        assert m["study"] in studies and isinstance(m["trial"], int) and m["space"] in ("knn", "logreg")
        assert (
            m["params"] and m["feature_set"] == "functionals" and m["feature_params"]["set"] == "functionals"
        )
        assert manifest["inputs"][m["input"]]["feature_params"] == m["feature_params"]
    rows = manifest["metrics"]["rows"]
    voter = rows[-1]
    assert voter["member"] == "voter"
    sel = manifest["selection"]
    assert sel["oof_score"] >= sel["best_member_oof_score"]
    assert voter["cv_uar"] == pytest.approx(sel["oof_score"])
    assert voter["cv_uar"] >= max(r["cv_uar"] for r in rows[:-1])
    assert 0 <= voter["test_accuracy"] <= 1 and manifest["n_test"] == 60  # one held-out actor
    cm = np.array(manifest["confusion_matrix"]["counts"])
    assert cm.shape == (8, 8) and cm.sum() == 60
    assert np.trace(cm) / 60 == pytest.approx(voter["test_accuracy"])
    png = (out / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG")

    # An existing model directory is only replaced with --force; --json is JSON only on stdout.
    again = run_cli("ensemble", *studies, "--storage", pg_url, "--out", out, "--cache", feature_cache)
    assert again.returncode == 1 and "not empty" in again.stderr and "--force" in again.stderr
    forced = run_cli(
        "ensemble", *studies, "--storage", pg_url, "--out", out, "--cache", feature_cache, "--force", "--json"
    )
    assert forced.returncode == 0, forced.stderr
    doc = json.loads(forced.stdout)
    assert doc["out"] == str(out) and doc["members"] == members  # deterministic: same trials, weights, params


def test_studies_on_another_split_are_refused(studies, make_study, pg_url, run_cli, tmp_path):
    other = f"test-ens-seed1-{uuid.uuid4().hex[:8]}"
    make_study("knn", other, trials=0, seed=1)
    proc = run_cli("ensemble", studies[0], other, "--storage", pg_url, "--out", tmp_path / "m")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "differ in seed (0 vs 1)" in proc.stderr
    assert not (tmp_path / "m").exists()
    proc = run_cli("ensemble", "no-such-study-xyz", "--storage", pg_url, "--out", tmp_path / "m")
    assert proc.returncode == 1 and "no study named 'no-such-study-xyz'" in proc.stderr


_KILLED_ENSEMBLE = textwrap.dedent(
    """
    import os, pathlib, signal, sys
    from emotune.search.vote import _modeldir as md
    from emotune.search.cli import main

    when = sys.argv[1]
    if when == "manifest":  # killed while writing manifest.json (the voter is already written)
        write = md._write_synced
        def killing(path, data):
            if path.name == md.MANIFEST:
                path.write_bytes(data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return write(path, data)
        md._write_synced = killing
    else:  # killed after the directory was renamed into place, before it was marked complete
        unlink = pathlib.Path.unlink
        def killing(self, *args, **kwargs):
            if self.name == ".incomplete":
                os.kill(os.getpid(), signal.SIGKILL)
            return unlink(self, *args, **kwargs)
        pathlib.Path.unlink = killing
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.parametrize("when", ["manifest", "rename"])
def test_a_killed_ensemble_leaves_nothing_predict_accepts(
    studies, pg_url, feature_cache, run_cli, tmp_path, ravdess, when
):
    out = tmp_path / "model"
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_ENSEMBLE)
    args = ["ensemble", *studies, "--storage", pg_url, "--out", str(out), "--cache", str(feature_cache)]
    proc = subprocess.run(
        [sys.executable, str(script), when, *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == -9, proc.stderr
    one = ravdess / "Actor_02" / "03-01-01-01-01-01-02.wav"
    left = [out] + sorted(tmp_path.glob(".model.tmp-*"))
    # killed mid-write: only the hidden temporary directory; killed after the rename: only MODEL_DIR
    assert out.exists() == (when == "rename") and len(left) == (1 if when == "rename" else 2)
    for d in left:
        pred = run_cli("predict", d, one, "--json")
        assert pred.returncode == 1 and pred.stdout == ""
        assert ("incomplete" if d.exists() else "no such model directory") in pred.stderr


def test_a_stacked_voter_builds_reports_exports_and_predicts(
    studies, pg_url, feature_cache, run_cli, tmp_path, ravdess
):
    """`--voter stacked` end to end (it crashed in the report: its members have no weights; issue 17)."""
    from emotune.search.vote._stack import StackedVoter

    out = tmp_path / "stacked"
    args = [*studies, "--voter", "stacked", "--storage", pg_url, "--out", out, "--cache", feature_cache]
    proc = run_cli("ensemble", *args)
    assert proc.returncode == 0, proc.stderr
    assert "voter: stacked (multinomial logistic regression" in proc.stdout
    members = [line.split() for line in proc.stdout.splitlines() if line.startswith(tuple(studies))]
    assert members and {m[2] for m in members} <= {"stacked", "-"} and "stacked" in {m[2] for m in members}

    manifest = md.verify(out)
    assert manifest["voter"]["kind"] == "stacked" and isinstance(manifest["voter"]["meta_C"], float)
    assert manifest["members"] and all(
        m["weight"] is None and m["count"] is None for m in manifest["members"]
    )
    voter, _ = md.load(out)
    assert isinstance(voter, StackedVoter) and len(voter.estimators_) == len(manifest["members"])
    page = (out / "report.html").read_text()
    assert "stacked voter: a logistic regression" in page and 'alt="voter weights"' not in page
    assert 'alt="confusion matrix of the voter"' in page

    # The report of the model directory, with its studies and every picture as a PNG.
    html = tmp_path / "stacked.html"
    proc = run_cli("report", out, "--out", html, "--png-dir", tmp_path / "png", "--storage", pg_url)
    assert proc.returncode == 0, proc.stderr
    assert (
        "stacked voter" in html.read_text()
        and (tmp_path / "png" / "confusion_matrix_of_the_voter.png").is_file()
    )

    # Exported as JSON (--json), replacing the earlier model directory with --force: the same model.
    proc = run_cli("ensemble", *args, "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (
        doc["out"] == str(out) and doc["voter"]["kind"] == "stacked" and doc["members"] == manifest["members"]
    )
    assert [r["member"] for r in doc["metrics"]["rows"]][-1] == "voter"

    # predict: unrounded probabilities in --json, three decimals for people.
    files = [
        ravdess / "Actor_01" / "03-01-05-01-01-01-01.wav",
        ravdess / "Actor_02" / "03-01-03-02-01-01-02.wav",
    ]
    proc = run_cli("predict", out, *files, "--json")
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(proc.stdout)
    assert [p["path"] for p in preds] == [str(f) for f in files]
    for p in preds:
        probs = p["probabilities"]
        assert list(probs) == manifest["classes"] and sum(probs.values()) == pytest.approx(1.0)
        assert p["label"] == max(probs, key=probs.get)
    assert any(len(repr(v)) > 8 for p in preds for v in p["probabilities"].values())  # unrounded
    proc = run_cli("predict", out, *files)
    assert proc.returncode == 0, proc.stderr
    numbers = re.findall(r"=(\d+\.\d+)", proc.stdout)
    assert len(numbers) == 2 * (1 + len(manifest["classes"]))
    assert all(len(n.split(".")[1]) <= 3 for n in numbers), proc.stdout
    shown = dict(re.findall(r"(\w+)=(\d\.\d+)", proc.stdout.splitlines()[1]))
    assert {c: float(v) for c, v in shown.items()} == {
        c: round(v, 3) for c, v in preds[0]["probabilities"].items()
    }
