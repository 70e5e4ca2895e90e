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
    out.write_text("previous page")

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

    assert "folder" in _one_line_error(run_cli("report", bogus, "--out", tmp_path))
    assert out.read_text() == "previous page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json", "model", "report.html"]


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
