"""Loading datasets from the cache: labels per scheme, dropped rows, length outliers, speaker norm."""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from emotune.features import (
    FeatureError,
    build,
    feature_params,
    label_of,
    load,
    scan,
    speaker_normalize,
)


@pytest.fixture(scope="module", autouse=True)
def _disconnect_ray():
    """Builds here attach this process to the session's Ray; detach before the cluster stops."""
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two RAVDESS actors, EmoDB (boredom has no `emotion` label) and one bad file, all real bytes."""
    root = tmp_path_factory.mktemp("corpus")
    for actor in ("Actor_01", "Actor_02"):
        shutil.copytree(data_dir / "ravdess" / actor, root / "ravdess" / actor, copy_function=shutil.copy2)
    shutil.copytree(data_dir / "emodb", root / "emodb", copy_function=shutil.copy2)
    good = (data_dir / "ravdess" / "Actor_03" / "03-01-05-01-01-01-03.wav").read_bytes()
    bad = root / "ravdess" / "Actor_03" / "03-01-05-01-01-01-03.wav"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(good[:1000])
    return root


@pytest.fixture(scope="module")
def cache(corpus: Path, ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    report = build([corpus], sets=["classic", "mfcc_seq"], cache_dir=cache, progress=False)
    assert report.files == 228 and len(report.failed) == 1
    return cache


def test_load_gives_labelled_rows_in_order(corpus: Path, cache: Path):
    rows = scan([corpus]).rows
    ds = load(rows, "classic", scheme="emotion", cache_dir=cache)
    by_path = {r.path: r for r in rows}
    assert ds.X.shape == (len(ds.rows), 180) and ds.X.dtype == np.float32
    assert np.isfinite(ds.X).all()
    assert [r.path for r in ds.rows] == [r.path for r in rows if r.path in {k.path for k in ds.rows}]
    assert ds.y.tolist() == [label_of(by_path[r.path], "emotion") for r in ds.rows]
    assert ds.groups.tolist() == [r.speaker for r in ds.rows]
    assert ds.hashes == [hashlib.sha256(Path(r.path).read_bytes()).hexdigest() for r in ds.rows]
    assert ds.classes == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert ds.params == feature_params("classic") and not ds.speaker_norm

    reasons = dict(ds.dropped)
    boredom = [r.path for r in rows if r.native == "boredom"]
    assert boredom and all("boredom" in reasons[p] for p in boredom)
    bad = str(corpus / "ravdess" / "Actor_03" / "03-01-05-01-01-01-03.wav")
    assert "truncated" in reasons[bad]
    assert len(ds.rows) + len(ds.dropped) == len(rows)


def test_other_schemes_and_sets(corpus: Path, cache: Path):
    rows = scan([corpus]).rows
    native = load(rows, "classic", scheme="corpus_native", cache_dir=cache)
    assert "boredom" in native.classes and len(native.dropped) == 1  # only the bad file
    gendered = load(rows, "classic", scheme="emotion_gender", cache_dir=cache)
    assert all(c.rsplit("_", 1)[1] in ("male", "female") for c in gendered.classes)
    assert set(gendered.y) == set(gendered.classes) and len(gendered.classes) == 16
    seq = load(rows, feature_params("mfcc_seq"), cache_dir=cache)
    assert seq.X.shape[1:] == (20, 236) and seq.X.dtype == np.float32


def test_missing_features_name_the_first_file(corpus: Path, cache: Path, tmp_path: Path):
    rows = scan([corpus]).rows
    first = next(r for r in rows if label_of(r, "emotion") is not None)
    with pytest.raises(
        FeatureError, match=f"melspec features of {re.escape(first.path)} are not in the cache"
    ):
        load(rows, "melspec", cache_dir=cache)
    with pytest.raises(FeatureError, match="not in the cache"):
        load(rows, "classic", cache_dir=tmp_path / "empty")
    with pytest.raises(FeatureError):
        load(rows, "classic", scheme="nope", cache_dir=cache)
    with pytest.raises(FeatureError, match="drop_length_outliers"):
        load(rows, "classic", cache_dir=cache, drop_length_outliers=0)


def test_speaker_norm_is_per_speaker_z_score(corpus: Path, cache: Path):
    rows = scan([corpus]).rows
    raw = load(rows, "classic", cache_dir=cache)
    normed = load(rows, "classic", cache_dir=cache, speaker_norm=True)
    assert normed.speaker_norm
    np.testing.assert_allclose(normed.X, speaker_normalize(raw.X, raw.groups), rtol=1e-6)
    for speaker in np.unique(normed.groups):
        block = normed.X[normed.groups == speaker].astype(np.float64)
        np.testing.assert_allclose(block.mean(axis=0), 0.0, atol=1e-4)
        std = block.std(axis=0)
        assert np.all((np.abs(std - 1) < 1e-3) | (std == 0))


def test_length_outliers_are_dropped_at_load_time(corpus: Path, cache: Path, data_dir: Path):
    rows = scan([corpus]).rows
    every = load(rows, "classic", scheme="corpus_native", cache_dir=cache)
    trimmed = load(rows, "classic", scheme="corpus_native", cache_dir=cache, drop_length_outliers=2.0)
    outliers = {path for path, reason in trimmed.dropped if reason.startswith("length outlier")}
    assert len(trimmed.rows) == len(every.rows) - len(outliers)

    # The same rule on index.csv's durations: |d - median| > 2 x 1.4826 x MAD.
    with open(data_dir / "index.csv", newline="") as f:
        seconds = {row["path"]: float(row["duration_s"]) for row in csv.DictReader(f) if row["duration_s"]}
    lengths = np.array([seconds[str(Path(r.path).relative_to(corpus))] for r in every.rows])
    median = np.median(lengths)
    far = np.abs(lengths - median) > 2.0 * 1.4826 * np.median(np.abs(lengths - median))
    assert outliers == {r.path for r, out in zip(every.rows, far, strict=True) if out}
    assert 0 < len(outliers) < len(every.rows) // 4


def test_loading_is_fast(corpus: Path, cache: Path):
    rows = scan([corpus]).rows
    load(rows, "classic", cache_dir=cache)
    t = time.process_time()  # CPU time: other jobs on the machine do not count
    load(rows, "classic", cache_dir=cache)
    assert time.process_time() - t < 0.5


def test_speaker_normalize_known_answer():
    X = np.array([[1.0, 5.0], [3.0, 5.0], [10.0, -2.0]])
    Z = speaker_normalize(X, ["a", "a", "b"])
    np.testing.assert_allclose(Z, [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    assert Z.dtype == np.float32
    cube = np.stack([np.full((2, 3), 1.0), np.full((2, 3), 3.0)])
    np.testing.assert_allclose(
        speaker_normalize(cube, ["s", "s"]), np.stack([-np.ones((2, 3)), np.ones((2, 3))])
    )
    with pytest.raises(FeatureError, match="one speaker per row"):
        speaker_normalize(X, ["a", "b"])


@settings(max_examples=60, deadline=None)
@given(
    X=arrays(
        np.float64,
        st.tuples(st.integers(2, 30), st.integers(1, 4), st.integers(1, 3)),
        elements=st.floats(-1e3, 1e3),
    ),  # fmt: skip
    data=st.data(),
)
def test_speaker_normalize_centres_and_scales_every_element(X: np.ndarray, data: st.DataObject):
    groups = np.array(data.draw(st.lists(st.sampled_from("abc"), min_size=len(X), max_size=len(X))))
    Z = speaker_normalize(X, groups)
    assert Z.shape == X.shape and np.isfinite(Z).all()
    for g in np.unique(groups):
        block = Z[groups == g].astype(np.float64)
        np.testing.assert_allclose(block.mean(axis=0), 0.0, atol=1e-3)
        std = block.std(axis=0)
        spread = X[groups == g].std(axis=0)
        assert np.all(
            np.where(spread > 1e-6 * (1 + np.abs(X[groups == g]).max()), np.abs(std - 1) < 1e-3, True)
        )
