"""read_audio / decode_bytes: real odd files, librosa.load equivalence, and every failure reason."""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emotune.features._audio import _decode_libsndfile, _decode_pcm16, _parse_header, decode_bytes, read_audio
from emotune.features._errors import AudioError, FeatureError

RAVDESS_MONO = "ravdess/Actor_01/03-01-05-01-01-01-01.wav"
RAVDESS_STEREO = "ravdess/Actor_01/03-01-02-01-01-02-01.wav"  # both channels equal
TESS_96K = "tess/OAF_Fear/OAF_food_fear.wav"
TESS_AIFF = "tess/YAF_angry/YAF_germ_angry.wav"  # AIFF behind a .wav name
TESS_24K = "tess/YAF_angry/YAF_back_angry.wav"
EMODB = "emodb/wav/03a01Fa.wav"
REAL = [RAVDESS_MONO, RAVDESS_STEREO, TESS_96K, TESS_AIFF, TESS_24K, EMODB]


def _wav_bytes(y: np.ndarray, sr: int, *, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _reason(excinfo: pytest.ExceptionInfo[AudioError]) -> str:
    err = excinfo.value
    assert "\n" not in str(err) and str(err) == f"{err.path}: {err.reason}"
    return err.reason


# --------------------------------------------------------------------------------------------------
# Real files: the same array as librosa.load, bit for bit


@pytest.mark.parametrize("name", REAL)
def test_real_files_equal_librosa_load(data_dir: Path, name: str) -> None:
    y = read_audio(data_dir / name)
    expected, _ = librosa.load(data_dir / name, sr=22050)
    assert y.dtype == np.float32 and y.ndim == 1
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("name", [RAVDESS_STEREO, TESS_AIFF])
def test_other_target_rate_equals_librosa_load(data_dir: Path, name: str) -> None:
    np.testing.assert_array_equal(
        read_audio(data_dir / name, sr=16000), librosa.load(data_dir / name, sr=16000)[0]
    )


@pytest.mark.parametrize("name", REAL)
def test_pcm16_fast_path_equals_libsndfile(data_dir: Path, name: str) -> None:
    data = (data_dir / name).read_bytes()
    where = _parse_header(data, name)
    assert where is not None, "every real file is plain 16-bit PCM"
    fast = _decode_pcm16(data, where)
    slow, rate = _decode_libsndfile(data, name)
    assert rate == where.rate
    np.testing.assert_array_equal(fast, slow)


def test_aiff_behind_wav_name_is_read_by_content(data_dir: Path) -> None:
    data = (data_dir / TESS_AIFF).read_bytes()
    assert data[:4] == b"FORM" and data[8:12] == b"AIFF"
    assert len(read_audio(data_dir / TESS_AIFF)) == math.ceil(
        sf.info(io.BytesIO(data)).frames * 22050 / 24414
    )


def test_stereo_is_the_mean_of_the_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    left, right = rng.uniform(-0.5, 0.5, (2, 2205)).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 22050, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(path), (left + right) / 2, rtol=0, atol=1e-7)


def test_decode_bytes_equals_read_audio(data_dir: Path) -> None:
    data = (data_dir / RAVDESS_STEREO).read_bytes()
    np.testing.assert_array_equal(decode_bytes(data, sr=22050), read_audio(data_dir / RAVDESS_STEREO))


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [
        ("FLAC", "PCM_16"),
        ("FLAC", "PCM_24"),
        ("WAV", "PCM_24"),
        ("WAV", "PCM_U8"),
        ("WAV", "FLOAT"),
        ("WAV", "DOUBLE"),
        ("RF64", "PCM_16"),
        ("AIFF", "PCM_16"),
        ("AIFF", "FLOAT"),
        ("OGG", "VORBIS"),
    ],
)
def test_other_encodings_equal_librosa_load(tmp_path: Path, fmt: str, subtype: str) -> None:
    t = np.arange(30000) / 44100
    y = 0.3 * np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1)
    path = tmp_path / "x.wav"  # the extension never matters
    sf.write(path, y, 44100, format=fmt, subtype=subtype)
    np.testing.assert_array_equal(read_audio(path), librosa.load(path, sr=22050)[0])


def test_decoding_and_resampling_import_no_librosa(data_dir: Path, tmp_path: Path) -> None:
    """soxr and libsndfile directly: a fresh process that reads audio never loads librosa or numba."""
    flac = tmp_path / "x.flac"
    sf.write(flac, np.zeros((4410, 2)), 44100, format="FLAC")  # the libsndfile path
    paths = [str(data_dir / name) for name in REAL] + [str(flac)]
    code = f"""
import json, sys
from emotune.features._audio import read_audio
lengths = [len(read_audio(p, sr=sr)) for p in {paths!r} for sr in (16000, 22050)]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("librosa", "numba") or m.startswith("scipy.signal"))
print(json.dumps({{"heavy": heavy, "lengths": lengths}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["lengths"]) == 2 * len(paths) and min(result["lengths"]) > 0
    assert result["heavy"] == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 6000),
    rate=st.sampled_from([8000, 11025, 16000, 22050, 24414, 44100, 48000, 96000]),
    channels=st.integers(1, 3),
    subtype=st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]),
    seed=st.integers(0, 2**16),
)
def test_any_rate_length_and_layout_equal_librosa_load(
    n: int, rate: int, channels: int, subtype: str, seed: int
) -> None:
    y = np.random.default_rng(seed).uniform(-1, 1, (n, channels)) * 0.9
    data = _wav_bytes(y, rate, subtype=subtype)
    got = decode_bytes(data, sr=22050)
    expected, _ = librosa.load(io.BytesIO(data), sr=22050)
    assert got.dtype == np.float32 and got.shape == (math.ceil(n * 22050 / rate),)
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------------------------------
# Failures: one short reason each


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError) as excinfo:
        read_audio(tmp_path / "empty.wav")
    assert _reason(excinfo) == "empty file"
    assert excinfo.value.path == str(tmp_path / "empty.wav")


@pytest.mark.parametrize(
    "content", [b"not audio at all\n", b"RIFF\x10\x00\x00\x00AVI LIST\x00\x00\x00\x00", bytes(500)]
)
def test_not_audio(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.wav").write_bytes(content)
    with pytest.raises(AudioError) as excinfo:
        read_audio(tmp_path / "x.wav")
    reason = _reason(excinfo)
    assert reason.startswith("not an audio file (") and reason.endswith(")")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="cannot read"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="a folder, not a regular file"):
        read_audio(tmp_path)


def test_zero_samples(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(_wav_bytes(np.zeros(0), 16000))
    with pytest.raises(AudioError) as excinfo:
        read_audio(tmp_path / "x.wav")
    assert _reason(excinfo) == "no audio (0 samples)"


def test_non_finite_float_samples(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(_wav_bytes(np.array([0.0, np.nan, 0.1]), 16000, subtype="FLOAT"))
    with pytest.raises(AudioError, match="non-finite"):
        read_audio(tmp_path / "x.wav")


@pytest.mark.parametrize("sr", [0, -1, 22050.0, True, None])
def test_bad_target_rate(data_dir: Path, sr: object) -> None:
    with pytest.raises(FeatureError, match=f"sr={sr!r}"):
        read_audio(data_dir / EMODB, sr=sr)  # type: ignore[arg-type]


def test_truncated_inside_the_audio(data_dir: Path, tmp_path: Path) -> None:
    """A decoder would read the 200,000 bytes silently; the header promises far more."""
    data = (data_dir / RAVDESS_MONO).read_bytes()
    info = sf.info(io.BytesIO(data))
    audio_start = data.index(b"data") + 8
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:200000])
    assert sf.info(cut).frames > 0  # libsndfile alone would not complain
    with pytest.raises(AudioError) as excinfo:
        read_audio(cut)
    held = (200000 - audio_start) // (2 * info.channels)
    assert _reason(excinfo) == f"truncated: header promises {info.frames} frames, file holds {held}"


@pytest.mark.parametrize("length", [10, 30, 1000, 4090])
def test_truncated_before_the_audio(data_dir: Path, tmp_path: Path, length: int) -> None:
    """RAVDESS keeps a 4 KB FLLR chunk before its data chunk; cuts inside the header area."""
    cut = tmp_path / "cut.wav"
    cut.write_bytes((data_dir / RAVDESS_MONO).read_bytes()[:length])
    with pytest.raises(AudioError) as excinfo:
        read_audio(cut)
    assert _reason(excinfo).startswith("truncated")


def test_truncated_right_after_the_data_header(data_dir: Path, tmp_path: Path) -> None:
    data = (data_dir / EMODB).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: data.index(b"data") + 8])
    with pytest.raises(AudioError) as excinfo:
        read_audio(cut)
    assert (
        _reason(excinfo)
        == f"truncated: header promises {sf.info(data_dir / EMODB).frames} frames, file holds 0"
    )


def test_truncated_aiff(data_dir: Path, tmp_path: Path) -> None:
    data = (data_dir / TESS_AIFF).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:50000])
    frames = sf.info(io.BytesIO(data)).frames
    sound_start = data.index(b"SSND") + 16  # chunk header, offset and block size fields
    with pytest.raises(AudioError) as excinfo:
        read_audio(cut)
    assert (
        _reason(excinfo)
        == f"truncated: header promises {frames} frames, file holds {(50000 - sound_start) // 2}"
    )


def test_cut_metadata_after_the_audio_is_not_truncation(data_dir: Path, tmp_path: Path) -> None:
    """RAVDESS stores LIST/bext/_PMX chunks after the audio; losing their tail loses no audio."""
    data = (data_dir / RAVDESS_MONO).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:-100])
    np.testing.assert_array_equal(read_audio(cut), read_audio(data_dir / RAVDESS_MONO))


def test_float_wav_truncation_counts_frames(tmp_path: Path) -> None:
    data = _wav_bytes(np.zeros((1000, 2)), 8000, subtype="FLOAT")
    with pytest.raises(AudioError) as excinfo:
        decode_bytes(data[:-800], path="f.wav")
    assert _reason(excinfo) == "truncated: header promises 1000 frames, file holds 900"


def test_cut_flac_fails(tmp_path: Path) -> None:
    data = _wav_bytes(np.random.default_rng(0).uniform(-0.5, 0.5, 40000), 16000, fmt="FLAC")
    with pytest.raises(AudioError) as excinfo:
        decode_bytes(data[: len(data) // 2], path="cut.flac")
    assert _reason(excinfo).startswith(("cannot decode, truncated or corrupt (", "truncated: "))


def test_unpatched_stream_size_is_left_to_the_decoder() -> None:
    """Writers that stream set the data size to 0xFFFFFFFF; that is not a promise."""
    data = bytearray(_wav_bytes(np.full(500, 0.25), 16000))
    pos = data.index(b"data") + 4
    data[pos : pos + 4] = struct.pack("<I", 0xFFFFFFFF)
    assert len(decode_bytes(bytes(data), sr=16000)) == 500
