"""`emotune explore`: PCA + KMeans view of a corpus, built through the feature cache."""

from __future__ import annotations

import shutil

import numpy as np
from pngcheck import check_png

from emotune.search.viz import cluster_purity, corpus


def test_cluster_purity():
    assert cluster_purity(["a", "a", "b", "b"], [0, 0, 1, 1]) == 1.0
    assert cluster_purity(["a", "b", "a", "b"], [0, 0, 1, 1]) == 0.5
    assert cluster_purity(["a", "a", "a", "b"], [0, 0, 0, 0]) == 0.75


def test_explore_separates_a_two_class_synthetic_corpus(run_cli, emotune_home, ray_address, tmp_path):
    run_cli("corpus", "synth", tmp_path / "synth", "--actors", "4", check=True)
    two = tmp_path / "two"
    two.mkdir()
    for wav in sorted((tmp_path / "synth").glob("Actor_*/03-01-0[45]-*.wav")):  # sad (04), angry (05)
        shutil.copy(wav, two / wav.name)
    out = tmp_path / "view"
    proc = run_cli("explore", two, "--out", out, check=True)
    assert "cluster purity" in proc.stdout and "ravdess:04" in proc.stdout
    check_png(out / f"{corpus.PCA_FIGURE}.png", corpus.PCA_SIZE)
    check_png(out / f"{corpus.COUNTS_FIGURE}.png", corpus.COUNTS_SIZE)
    csv = (out / corpus.COUNTS_CSV).read_text().splitlines()
    assert csv[0] == "by,value,class,files" and "gender,female,sad,16" in csv

    # The same view from the library (the cache is warm now): the two classes lie apart in 2-D.
    from sklearn.linear_model import LogisticRegression

    view = corpus.explore([two], tmp_path / "again", progress=False)
    assert view.classes == ["sad", "angry"] and len(view.labels) == 64
    assert LogisticRegression().fit(view.coords, view.labels).score(view.coords, view.labels) >= 0.95
    centres = {c: view.coords[view.labels == c].mean(axis=0) for c in view.classes}
    gap = np.linalg.norm(centres["sad"] - centres["angry"])
    spread = max(view.coords[view.labels == c].std(axis=0).mean() for c in view.classes)
    assert gap > spread, (gap, spread)


def test_explore_with_one_class_is_a_one_line_error(run_cli, emotune_home, ray_address, data_dir, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    for wav in sorted((data_dir / "ravdess" / "Actor_01").glob("03-01-05-*.wav"))[:3]:
        shutil.copy(wav, one / wav.name)
    proc = run_cli("explore", one, "--out", tmp_path / "view")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("emotune: error: ")
    assert "class" in proc.stderr.strip().splitlines()[-1]
