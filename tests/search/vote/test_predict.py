"""predict: model directory -> labels and probabilities of real RAVDESS files."""

from __future__ import annotations

import json
import shutil
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest

from emotune.features import load
from emotune.search.vote import _modeldir as md
from emotune.search.vote._ensemble import build_ensemble
from emotune.search.vote._predict import predict, windows_of

CLASSES8 = {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"}


def _model(tmp_path_factory, make_study, url, cache, *, speaker_norm: bool):
    tag = uuid.uuid4().hex[:8]
    names = [f"test-pred-{space}-{tag}" for space in ("knn", "logreg")]
    for space, name in zip(("knn", "logreg"), names, strict=True):
        # feature set classic, the 180 means: what _cached_features loads
        make_study(space, name, trials=3, speaker_norm=speaker_norm, feature_set="classic")
    out = tmp_path_factory.mktemp("model") / "model"
    return build_ensemble(url, names, out, top_k=2, cache_dir=cache, progress=False)


@pytest.fixture(scope="module")
def model(tmp_path_factory, make_study, pg_url, feature_cache):
    return _model(tmp_path_factory, make_study, pg_url, feature_cache, speaker_norm=False)


def _cached_features(files: list[Path], cache: Path, *, speaker_norm: bool) -> np.ndarray:
    from emotune.features import scan

    rows = scan([str(f) for f in files]).rows
    order = {r.path: i for i, r in enumerate(rows)}
    ds = load(rows, "classic", cache_dir=cache, speaker_norm=speaker_norm)
    by_path = {r.path: x for r, x in zip(ds.rows, ds.X, strict=True)}
    assert len(by_path) == len(order)
    return np.stack([by_path[str(Path(f).absolute())] for f in files])


def test_predict_matches_the_in_memory_voter(model, feature_cache, ravdess):
    files = sorted((ravdess / "Actor_02").glob("*.wav"))
    result = predict(model.out, files)
    assert [p.path for p in result.predictions] == [str(f) for f in files] and not result.errors
    got = np.array([[p.probabilities[c] for c in model.classes] for p in result.predictions])
    expected = model.voter.predict_proba(
        {"classic": _cached_features(files, feature_cache, speaker_norm=False)}
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert all(p.speaker_norm == "none" for p in result.predictions)
    assert [p.label for p in result.predictions] == list(model.voter.classes_[expected.argmax(axis=1)])


def test_predict_cli_json(model, ravdess, run_cli):
    proc = run_cli("predict", model.out, ravdess / "Actor_02", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)  # stdout holds the JSON and nothing else
    assert len(rows) == 60
    for r in rows:
        assert r["label"] in CLASSES8 and set(r["probabilities"]) == set(model.classes)
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-9
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["speaker_norm"] == "none" and r["speaker"] == "ravdess:02"
    # unrounded: the JSON floats carry full precision
    assert any(len(repr(v)) > 10 for r in rows for v in r["probabilities"].values())
    text = run_cli("predict", model.out, ravdess / "Actor_02" / "03-01-05-02-01-01-02.wav")
    assert (
        text.returncode == 0
        and "03-01-05-02-01-01-02.wav: " in text.stdout
        and "speaker_norm=none" in text.stdout
    )


def test_bad_files_are_reported_and_the_others_classified(model, ravdess, run_cli, tmp_path):
    good = ravdess / "Actor_02" / "03-01-01-01-01-01-02.wav"
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(good.read_bytes()[:3000])
    missing = tmp_path / "missing.wav"
    proc = run_cli("predict", model.out, text, good, truncated, missing, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["path"] for r in rows] == [str(good)]
    for bad in (text, truncated, missing):
        assert any(line.startswith(f"{bad}: ") for line in proc.stderr.splitlines()), proc.stderr
    assert "truncated" in proc.stderr and "no such file or folder" in proc.stderr
    only_bad = run_cli("predict", model.out, text, "--json")
    assert only_bad.returncode == 1 and only_bad.stdout == ""
    assert "no file could be classified" in only_bad.stderr


def _concat_wav(files: list[Path], out: Path) -> float:
    from emotune.features import read_audio

    y = np.concatenate([read_audio(f, sr=16000) for f in files])
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return len(y) / 16000


def test_window_labels_each_window_and_averages_them(model, ravdess, run_cli, tmp_path):
    long = tmp_path / "meeting.wav"
    seconds = _concat_wav(sorted((ravdess / "Actor_04").glob("03-01-0[58]-02-*.wav"))[:4], long)
    proc = run_cli("predict", model.out, long, "--json", "--window", "3")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    windows = row["windows"]
    assert len(windows) == len(windows_of(int(seconds * 16000), 16000, 3.0)) >= 4
    assert windows[0]["start"] == 0 and windows[-1]["end"] == pytest.approx(seconds, abs=1e-3)
    mean = {c: np.mean([w["probabilities"][c] for w in windows]) for c in model.classes}
    for c in model.classes:
        assert row["probabilities"][c] == pytest.approx(mean[c], abs=1e-12)
    assert all(w["label"] in CLASSES8 for w in windows)
    bad = run_cli("predict", model.out, long, "--window", "0")
    assert bad.returncode == 2 and "--window" in bad.stderr  # a usage error, before the model is read


def test_windows_of():
    assert windows_of(10, 1, 3.0) == [(0, 3), (3, 6), (6, 10)]  # a 1 s tail joins the last window
    assert windows_of(11, 1, 3.0) == [(0, 3), (3, 6), (6, 9), (9, 11)]
    assert windows_of(2, 1, 3.0) == [(0, 2)]


def test_a_tampered_model_directory_is_refused(model, ravdess, run_cli, tmp_path):
    one = ravdess / "Actor_02" / "03-01-01-01-01-01-02.wav"
    copy = tmp_path / "copy"
    shutil.copytree(model.out, copy)
    assert run_cli("predict", copy, one, "--json").returncode == 0
    with open(copy / md.VOTER_FILE, "ab") as f:
        f.write(b"x")
    proc = run_cli("predict", copy, one, "--json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "voter.joblib: does not match its sha256" in proc.stderr

    # A model made by another feature version (manifest re-signed, so only the version differs).
    shutil.rmtree(copy)
    shutil.copytree(model.out, copy)
    doc = json.loads((copy / md.MANIFEST).read_text())
    for spec in doc["inputs"].values():
        spec["feature_params"]["version"] += 1
    doc["checksum"] = md.manifest_checksum(doc)
    (copy / md.MANIFEST).write_text(json.dumps(doc))
    proc = run_cli("predict", copy, one)
    assert proc.returncode == 1 and "features version" in proc.stderr and "rebuild" in proc.stderr


@pytest.fixture(scope="module")
def normed(tmp_path_factory, make_study, pg_url, feature_cache):
    return _model(tmp_path_factory, make_study, pg_url, feature_cache, speaker_norm=True)


def test_speaker_normalisation(normed, feature_cache, ravdess, tmp_path):
    manifest = md.verify(normed.out)
    assert manifest["speaker_norm"] is True
    stats = manifest["inputs"]["classic+speaker_norm"]["training_stats"]
    assert stats["shape"] == [180] and len(stats["mean"]) == 180

    # A speaker with >= 5 files in the call: its own statistics, as the training data had.
    files = sorted((ravdess / "Actor_02").glob("*.wav"))
    result = predict(normed.out, files)
    assert {p.speaker_norm for p in result.predictions} == {"speaker"}
    got = np.array([[p.probabilities[c] for c in normed.classes] for p in result.predictions])
    X = _cached_features(files, feature_cache, speaker_norm=True)
    np.testing.assert_allclose(got, normed.voter.predict_proba({"classic+speaker_norm": X}), atol=1e-6)

    # Fewer than 5 files of a speaker, or a name that tells no speaker: the training statistics.
    few = predict(normed.out, files[:4])
    assert {p.speaker_norm for p in few.predictions} == {"training"}
    anon = tmp_path / "clip.wav"
    shutil.copy(files[0], anon)
    (p,) = predict(normed.out, [anon]).predictions
    assert p.speaker_norm == "training" and p.speaker is None
    raw = _cached_features(files[:1], feature_cache, speaker_norm=False).astype(np.float64)
    mean, std = np.array(stats["mean"]), np.array(stats["std"])
    expected = normed.voter.predict_proba(
        {"classic+speaker_norm": ((raw - mean) / np.where(std == 0, 1, std)).astype(np.float32)}
    )
    np.testing.assert_allclose([p.probabilities[c] for c in normed.classes], expected[0], atol=1e-9)
