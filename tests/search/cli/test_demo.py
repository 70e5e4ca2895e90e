"""The demo end to end on the embedded PostgreSQL, and the --help of the model commands."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("ensemble", ["--out", "--top-k", "--storage", "EMOTUNE_STORAGE", "--force", "example:"]),
        ("predict", ["MODEL_DIR", "--json", "--window", "speaker_norm", "example:"]),
        (
            "evaluate",
            ["--spaces", "--outer-folds", "--trials", "--timeout", "--protocol", "--storage", "example:"],
        ),
        ("demo", ["--data", "--out", "example:"]),
    ],
)
def test_help(run_cli, command, words):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    for word in words:
        assert word in proc.stdout, word


def test_usage_errors_exit_2(run_cli):
    assert run_cli("predict").returncode == 2
    assert run_cli("ensemble", "a-study").returncode == 2  # --out is required


@pytest.fixture
def private_home(monkeypatch):
    """EMOTUNE_HOME outside pytest's temp root: pytest sessions of others chmod that root to 0700
    at any time, and then the embedded server's user (`pgserver`) could not reach its data to stop."""
    home = Path(tempfile.mkdtemp(prefix="emotune-demo-test-"))
    monkeypatch.setenv("EMOTUNE_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_demo_on_the_embedded_storage(run_cli, private_home, ray_address, tmp_path):
    emotune_home = private_home
    out = tmp_path / "demo"
    try:
        proc = run_cli("demo", "--out", out, "--trials", "3", timeout=900)
    finally:
        stop = run_cli("storage", "stop")  # the embedded server runs detached: stop it
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stop.returncode == 0, stop.stderr[-3000:]
    # progress on stderr, the report and the summary on stdout
    assert "[1/7]" in proc.stderr and "[7/7]" in proc.stderr and "demo finished in" in proc.stderr
    assert (
        "test UAR" in proc.stdout
        and "confusion matrix" in proc.stdout
        and "where everything is:" in proc.stdout
    )
    assert str(emotune_home / "pg") in proc.stdout  # the embedded default, not the machine's server
    assert len(list((out / "data").rglob("*.wav"))) == 240
    for name in ("manifest.json", "voter.joblib", "confusion_matrix.png"):
        assert (out / "model" / name).is_file()
    for space in ("knn", "logreg", "mlp"):
        best = json.loads((out / "best" / f"{space}.json").read_text())
        assert best["space"] == space and best["params"] and best["finished_trials"] == 3
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == 6 and all(p["label"] and p["true_label"] for p in predictions)
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert {m["space"] for m in manifest["members"]} <= {"knn", "logreg", "mlp"}
    assert len(manifest["studies"]) == 3


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_demo_never_writes_into_a_folder_it_did_not_write(run_cli, tmp_path):
    """--out must be new, empty or an earlier demo; its model/, data/ and best/ its own (issue 17).

    Refused before any work: no storage is started, nothing is written or deleted.
    """
    project = tmp_path / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "weights.txt").write_text("my own model")  # demo used to delete model/*
    (project / "src.py").write_text("print('mine')\n")
    before = _tree(project)
    proc = run_cli("demo", "--out", project, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "not an earlier output of emotune demo" in proc.stderr
    assert _tree(project) == before

    # An earlier demo's folder whose model/ was replaced by the user's own files: refused too.
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / ".emotune-output").write_text(json.dumps({"written_by": "emotune demo"}))
    (earlier / "model").mkdir()
    (earlier / "model" / "weights.txt").write_text("my own model")
    before = _tree(earlier)
    proc = run_cli("demo", "--out", earlier, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "model" in proc.stderr and "--force replaces only a model directory" not in proc.stderr
    assert _tree(earlier) == before


def test_an_earlier_demo_folder_is_accepted_again(tmp_path):
    """A re-run (`make demo` twice) passes the checks: a marked folder, its model directory and corpus."""
    from emotune.features import synthesize
    from emotune.features._outdir import check_output_dir
    from emotune.search.cli.demo import DEMO_OWNER, _check_demo_parts
    from emotune.search.vote import _modeldir as md

    out = tmp_path / "demo"
    out.mkdir()
    (out / ".emotune-output").write_text(json.dumps({"written_by": DEMO_OWNER}))
    synthesize(out / "data", actors=1, statements=1, repetitions=1)
    md.write(out / "model", {md.VOTER_FILE: b"a voter"}, {"classes": ["a"]})
    (out / "best").mkdir()
    (out / "best" / ".emotune-output").write_text(json.dumps({"written_by": DEMO_OWNER}))
    check_output_dir(out, owner=DEMO_OWNER)
    _check_demo_parts(out, synthetic=True)
