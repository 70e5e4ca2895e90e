"""`emotune report` and the page `ensemble` writes: real studies, real Chromium, atomic writes."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from browser import open_page

from emotune.search.viz import report
from emotune.search.vote import _modeldir as md

ARTEFACTS = Path(__file__).resolve().parents[3] / ".emotune" / "artefacts"


@pytest.fixture(scope="module")
def two_studies(make_study):
    """knn and logreg searched on the RAVDESS actors (one split), 6 trials each."""
    tag = uuid.uuid4().hex[:8]
    names = [f"test-rep-knn-{tag}", f"test-rep-logreg-{tag}"]
    for space, name in zip(("knn", "logreg"), names, strict=True):
        make_study(space, name, trials=6)
    return names


def check_page(path: Path, min_images: int, artefact: str) -> str:
    """The page opens in headless Chromium with no errors and every image decoded; keeps a screenshot."""
    page = path.read_text(encoding="utf-8")
    assert not re.findall(r"""(?:src|href)=["'](?!data:)""", page), "the page must not reference other files"
    load = open_page(path)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / artefact).write_bytes(load.screenshot)
    assert load.errors == [], load.errors
    assert len(load.images) >= min_images, len(load.images)
    broken = [i for i in load.images if not i["complete"] or i["width"] <= 0]
    assert not broken, broken
    assert load.screenshot.startswith(b"\x89PNG")
    return page


def test_report_of_studies_and_of_the_ensemble(two_studies, pg_url, feature_cache, run_cli, tmp_path):
    out = tmp_path / "studies.html"
    proc = run_cli("report", *two_studies, "--storage", pg_url, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    # per study: history, importances, steps, out-of-fold confusion, recall
    page = check_page(out, 2 * 5, "report-studies.png")
    for name in two_studies:
        assert f"study {name}" in page and f'alt="parameter importances of {name}"' in page
        assert f'alt="optimisation history of {name}"' in page and f'alt="confusion matrix of {name}"' in page
    assert "CV UAR" in page

    model = tmp_path / "model"
    proc = run_cli("ensemble", *two_studies, "--storage", pg_url, "--out", model, "--cache", feature_cache)
    assert proc.returncode == 0, proc.stderr
    manifest = md.verify(model)  # report.html is listed with its checksum
    assert report.REPORT_FILE in manifest["files"]
    # weights, a confusion matrix per member and the voter, recall; then both studies
    members = sum(r.get("test_confusion") is not None for r in manifest["metrics"]["rows"][:-1])
    assert members >= 2  # the chosen members and each study's best
    page = check_page(model / report.REPORT_FILE, 3 + members + 2 * 5, "report-ensemble.png")
    assert "voter weights" in page and "train / CV / test" in page
    predicted = run_cli("predict", model, manifest["roots"][0] + "/Actor_01/03-01-05-01-01-01-01.wav")
    assert predicted.returncode == 0, predicted.stderr  # predict still accepts the directory

    # `report MODEL_DIR` without a storage: the ensemble part alone
    alone = tmp_path / "model.html"
    proc = run_cli("report", model, "--out", alone, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    check_page(alone, 3 + members, "report-model-dir.png")


def _one_line_error(proc) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotune: error: "), proc.stderr
    return lines[0]


def test_bad_sources_are_one_line_errors_and_leave_the_old_page(pg_url, run_cli, tmp_path):
    out = tmp_path / "report.html"
    previous = report.render("previous page", [])
    out.write_text(previous)

    missing = f"no-such-study-{uuid.uuid4().hex[:8]}"
    assert missing in _one_line_error(run_cli("report", missing, "--storage", pg_url, "--out", out))

    model = tmp_path / "model"
    md.write(model, {md.VOTER_FILE: b"not a pickle", md.CONFUSION_PNG: b"\x89PNG"}, {"classes": ["a"]})
    (model / md.CONFUSION_PNG).write_bytes(b"\x89PNG changed")
    assert "sha256" in _one_line_error(run_cli("report", model, "--out", out))

    bogus = tmp_path / "eval.json"
    bogus.write_text(json.dumps({"settings": {}}))
    assert "evaluate --json" in _one_line_error(run_cli("report", bogus, "--out", out))
    bogus.write_text("{not json")
    assert "JSON" in _one_line_error(run_cli("report", bogus, "--out", out))
    for malformed in (  # the three keys, with the wrong shapes: named, never a traceback
        {"settings": [], "summary": {}, "folds": 3},
        {"settings": {}, "summary": [1], "folds": [[]]},
        {"settings": {"spaces": 1}, "summary": [{"model": None}], "folds": [{"fold": 0}]},
    ):
        bogus.write_text(json.dumps(malformed))
        assert str(bogus) in _one_line_error(run_cli("report", bogus, "--out", out))

    assert "folder" in _one_line_error(run_cli("report", bogus, "--out", tmp_path))
    assert out.read_text() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "model", "report.html"]


def _evaluation(models: list[str]) -> dict:
    rows = [
        {
            "model": m,
            "train_accuracy": 0.9,
            "cv_accuracy": 0.5,
            "cv_uar": 0.5,
            "test_accuracy": 0.4,
            "test_uar": 0.4,
        }
        for m in models
    ]
    summary = [
        {"model": m, "folds": 1, "accuracy_mean": 0.4, "accuracy_std": 0.1, "uar_mean": 0.4, "uar_std": 0.1}
        for m in models
    ]
    return {"settings": {"spaces": models}, "summary": summary, "folds": [{"fold": 0, "rows": rows}]}


def test_report_writes_only_new_files_its_own_pages_and_its_own_png_folders(run_cli, tmp_path):
    """--out replaces only a page emotune wrote; --png-dir fills only a new, empty or its own folder."""
    doc = tmp_path / "eval.json"
    doc.write_text(json.dumps(_evaluation(["knn", "logreg"])))
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    proc = run_cli("report", doc, "--out", mine)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "not a page emotune wrote" in proc.stderr
    assert mine.read_text() == "<html>my notes</html>"

    figures = tmp_path / "project"
    (figures / "src").mkdir(parents=True)
    (figures / "src" / "a.py").write_text("mine")
    out = tmp_path / "page.html"
    proc = run_cli("report", doc, "--out", out, "--png-dir", figures)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--png-dir" in proc.stderr and "not an earlier output" in proc.stderr
    assert not out.exists() and sorted(p.name for p in figures.rglob("*")) == ["a.py", "src"]

    for _ in range(2):  # a new folder, then its own page and folder again
        proc = run_cli("report", doc, "--out", out, "--png-dir", tmp_path / "png")
        assert proc.returncode == 0, proc.stderr
    assert report.is_report(out) and (tmp_path / "png" / "test_scores_per_model.png").is_file()


def _renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _overlaps(boxes) -> bool:
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


@pytest.mark.parametrize("n", [2, 4, 8, 12])
def test_long_model_names_on_the_scores_chart_do_not_overlap(n):
    spaces = ["logreg", "knn", "mlp", "xgboost", "lightgbm", "random_forest"]
    models = [f"{spaces[i % len(spaces)]}{i}" for i in range(n)]
    doc = _evaluation(models)
    for s, r in zip(doc["summary"], doc["folds"][0]["rows"], strict=True):
        s["speaker_norm"] = r["speaker_norm"] = True  # "... (speaker-normalised)": the long labels
    fig = report.scores_figure(doc["summary"], doc["folds"])
    renderer = _renderer(fig)
    labels = [t for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(labels) == n
    assert not _overlaps([t.get_window_extent(renderer) for t in labels])
    width = fig.bbox.width
    assert all(
        t.get_window_extent(renderer).x0 >= 0 and t.get_window_extent(renderer).x1 <= width for t in labels
    )


def test_the_old_unwrapped_labels_did_overlap():
    """The check above can fail: the names as one line each, as before, run into each other."""
    models = [f"logreg{i} (speaker-normalised)" for i in range(8)]
    from emotune.search.viz._common import figure

    fig = figure(*report.WIDE)
    ax = fig.add_subplot()
    ax.set_xticks(range(8), models)
    renderer = _renderer(fig)
    assert _overlaps([t.get_window_extent(renderer) for t in ax.get_xticklabels()])


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import os

    from emotune.search.viz import write_atomic

    target = tmp_path / "report.html"
    target.write_text("old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, b"new page")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
