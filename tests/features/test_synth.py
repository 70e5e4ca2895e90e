"""The synthetic corpus: RAVDESS names, deterministic bytes, prosody that depends on the labels."""

from __future__ import annotations

import json
import shutil
import time
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from emotune.features._corpora import Row, scan
from emotune.features._errors import FeatureError
from emotune.features._labels import EMOTIONS
from emotune.features._outdir import MARKER, OutputDirError, marked_by
from emotune.features._synth import synthesize


def read_pcm(path: str | Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as handle:
        assert (handle.getnchannels(), handle.getsampwidth()) == (1, 2)
        frames = handle.readframes(handle.getnframes())
        return np.frombuffer(frames, "<i2").astype(np.float64) / 32768.0, handle.getframerate()


def frame_features(y: np.ndarray, sr: int) -> list[float]:
    """Mean and std of log frame energy and zero-crossing rate over 10 ms frames."""
    hop = sr // 100
    frames = y[: len(y) // hop * hop].reshape(-1, hop)
    energy = np.log(np.mean(frames**2, axis=1) + 1e-10)
    crossings = np.mean(np.diff(np.signbit(frames), axis=1), axis=1)
    return [energy.mean(), energy.std(), crossings.mean(), crossings.std()]


def f0_of(y: np.ndarray, sr: int) -> float:
    """Pitch of the loudest 40 ms by autocorrelation (60-400 Hz)."""
    width = int(0.04 * sr)
    start = int(np.argmax(np.convolve(y**2, np.ones(width), "valid")))
    frame = y[start : start + width] - y[start : start + width].mean()
    correlation = np.correlate(frame, frame, "full")[width - 1 :]
    low, high = sr // 400, sr // 60
    return sr / (low + int(np.argmax(correlation[low:high])))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], float]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    started = time.process_time()  # CPU time (synthesis runs in this process): other jobs do not count
    files = synthesize(out, actors=4, seed=0)
    return out, files, time.process_time() - started


@pytest.fixture(scope="module")
def rows(corpus) -> list[Row]:
    result = scan([corpus[0]])
    assert result.unparsed == []
    return result.rows


def test_layout_and_names_follow_ravdess(corpus) -> None:
    out, files, _ = corpus
    assert len(files) == 240 and files == sorted(files)
    assert sorted(p for p in out.rglob("*.wav")) == files
    assert sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.suffix != ".wav"
    ) == [MARKER]  # nothing else is written but the marker
    assert marked_by(out) == "emotune corpus synth"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "Actor_01", "Actor_02", "Actor_03", "Actor_04"]
    expected = {
        f"Actor_{actor:02d}/03-01-{emotion:02d}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}.wav"
        for actor in range(1, 5)
        for emotion in range(1, 9)
        for intensity in ((1,) if emotion == 1 else (1, 2))  # neutral has only normal intensity
        for statement in (1, 2)
        for repetition in (1, 2)
    }
    assert {str(path.relative_to(out)) for path in files} == expected


def test_the_readers_label_it_as_ravdess(rows: list[Row]) -> None:
    assert len(rows) == 240 and {row.corpus for row in rows} == {"ravdess"}
    genders = {row.speaker: row.gender for row in rows}
    assert genders == {
        "ravdess:01": "male",
        "ravdess:02": "female",
        "ravdess:03": "male",
        "ravdess:04": "female",
    }
    counts = Counter(row.emotion for row in rows)
    assert counts == {"neutral": 16, **dict.fromkeys(EMOTIONS[1:], 32)}  # 4 actors x (4 or 8) files


def test_files_are_short_mono_16_bit_wavs(corpus) -> None:
    for path in corpus[1][::7]:
        y, sr = read_pcm(path)
        assert sr == 16000
        assert 1.5 <= len(y) / sr <= 2.5
        assert 0.0 < np.abs(y).max() <= 1.0 and np.isfinite(y).all()


def test_it_is_fast(corpus) -> None:
    assert corpus[2] < 4.0, f"240 files took {corpus[2]:.2f} s of CPU"  # ~0.8 s


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    small = {"actors": 2, "statements": 1, "repetitions": 1}
    first = synthesize(tmp_path / "a", seed=7, **small)
    second = synthesize(tmp_path / "b", seed=7, **small)
    other = synthesize(tmp_path / "c", seed=8, **small)
    assert len(first) == 2 * 15
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert all(a.read_bytes() != c.read_bytes() for a, c in zip(first, other, strict=True))
    again = synthesize(tmp_path / "a", seed=7, **small)  # rewriting in place gives the same files
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in second]


def test_other_sample_rates(tmp_path: Path) -> None:
    (path,) = [
        p
        for p in synthesize(tmp_path, actors=1, sr=22050, statements=1, repetitions=1)
        if "-05-02-" in p.name
    ]
    y, sr = read_pcm(path)
    assert sr == 22050 and 1.5 <= len(y) / sr <= 2.5


def test_male_voices_are_lower(rows: list[Row]) -> None:
    pitch = {"male": [], "female": []}
    for row in rows:
        pitch[row.gender].append(f0_of(*read_pcm(row.path)))
    assert np.median(pitch["male"]) * 1.3 < np.median(pitch["female"])


def test_louder_emotions_are_louder(rows: list[Row]) -> None:
    def level(emotion: str, intensity: str) -> float:
        chosen = [row for row in rows if row.emotion == emotion and row.intensity == intensity]
        return float(np.median([np.sqrt(np.mean(read_pcm(row.path)[0] ** 2)) for row in chosen]))

    assert level("sad", "strong") < level("sad", "normal") < level("neutral", "normal")
    assert level("neutral", "normal") < level("angry", "normal") < level("angry", "strong")


def test_learnable_from_simple_features_but_not_trivially(rows: list[Row]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.array([frame_features(*read_pcm(row.path)) for row in rows])
    y = np.array([row.emotion for row in rows])
    groups = np.array([row.speaker for row in rows])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = cross_val_score(model, X, y, groups=groups, cv=GroupKFold(n_splits=4)).mean()
    assert 0.3 < accuracy < 0.85, accuracy  # chance is 1/8; ~0.45 measured


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"actors": 0}, "synth actors must be an integer in 1-99, got 0"),
        ({"statements": 3}, "synth statements must be an integer in 1-2, got 3"),
        ({"repetitions": 2.5}, "synth repetitions must be an integer in 1-99, got 2.5"),
        ({"sr": 100}, "synth sr must be an integer in 8000-96000, got 100"),
        ({"seed": -1}, "synth seed must be a non-negative integer, got -1"),
    ],
)
def test_bad_parameters_are_one_line_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(FeatureError, match=message):
        synthesize(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputDirError, match="^OUT .*file: exists and is not a folder"):
        synthesize(tmp_path / "file")


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_real_corpus_is_never_overwritten_or_mixed_with_synthetic_files(
    tmp_path: Path, data_dir: Path
) -> None:
    """The recordings keep their bytes, nothing is added, whatever their names (issue 17)."""
    real = tmp_path / "real" / "Actor_01"
    real.mkdir(parents=True)
    for f in sorted((data_dir / "ravdess" / "Actor_01").glob("03-01-0[1-4]-01-01-01-01.wav")):
        shutil.copy(f, real / f.name)  # the names synth writes too
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    for folder in (tmp_path / "real", tmp_path / "notes"):
        before = _tree(folder)
        with pytest.raises(OutputDirError, match=r"^OUT .*: folder is not empty and not an earlier output"):
            synthesize(folder, actors=2, statements=1, repetitions=1)
        assert _tree(folder) == before


def test_an_empty_folder_or_its_own_earlier_corpus_is_written(tmp_path: Path) -> None:
    small = {"statements": 1, "repetitions": 1, "seed": 3}
    (tmp_path / "empty").mkdir()
    first = synthesize(tmp_path / "empty", actors=2, **small)
    assert marked_by(tmp_path / "empty") == "emotune corpus synth"
    again = synthesize(tmp_path / "empty", actors=2, **small)  # a re-run over its own output
    assert again == first and not list((tmp_path / "empty").rglob(".*.tmp"))
    for other in ("emotune plot", "emotune figures"):  # another command's folder is not a corpus
        (tmp_path / other).mkdir()
        (tmp_path / other / MARKER).write_text(json.dumps({"written_by": other}))
        with pytest.raises(OutputDirError, match=f"written by {other}"):
            synthesize(tmp_path / other, actors=1, **small)
