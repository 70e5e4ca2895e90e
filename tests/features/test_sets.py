"""Feature sets: seed equivalence on real speech, known answers on tones and chirps, invariants."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emotune.features import _dsp
from emotune.features._analysis import _estimate_tuning, _magnitude, _pitch_tuning
from emotune.features._audio import read_audio
from emotune.features._errors import FeatureError
from emotune.features._sets import (
    AUDIO_SETS,
    FEATURE_SETS,
    PAD_MODES,
    _resize_weights,
    extract,
    extract_file,
    feature_columns,
    feature_params,
    feature_shape,
)
from emotune.features._stats import yin

SR = 22050
# Stereo, 96 kHz, AIFF-behind-.wav, 24,414 Hz and 16 kHz files, and speech of both genders.
REAL = [
    "ravdess/Actor_01/03-01-02-01-01-02-01.wav",
    "ravdess/Actor_02/03-01-05-02-01-01-02.wav",
    "ravdess/Actor_04/03-01-04-01-02-01-04.wav",
    "tess/OAF_Fear/OAF_food_fear.wav",
    "tess/YAF_angry/YAF_germ_angry.wav",
    "emodb/wav/03a01Fa.wav",
]


def tone(freq: float, seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def by_name(params: dict[str, Any], values: np.ndarray) -> dict[str, float]:
    return dict(zip(feature_columns(params), values.tolist(), strict=True))


# --------------------------------------------------------------------------------------------------
# Seed equivalence


def seed_000_classic(path: Path) -> np.ndarray:
    """The 180-means recipe's extract_feature(file, mfcc=True, chroma=True, mel=True), verbatim in spirit."""
    X, sample_rate = librosa.load(path, sr=SR)
    stft = np.abs(librosa.stft(X))
    mfccs = np.mean(librosa.feature.mfcc(y=X, sr=sample_rate, n_mfcc=40).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sample_rate).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=X, sr=sample_rate).T, axis=0)
    return np.hstack((mfccs, chroma, mel))


@pytest.mark.parametrize("name", REAL)
def test_classic_equals_the_seed(data_dir: Path, name: str) -> None:
    """Within 1e-4 relative, block by block.

    Both sides compute the same spectrum bit for bit (see test_magnitude_is_librosa_stft) and the
    same chroma tuning; what differs is float32 summation order: the recipe takes a DCT per frame
    then the mean, we take the mean then one DCT (equal in exact arithmetic), and the filterbank
    products run through different kernels. Those differences are ~1e-7 of a block's largest value,
    so a coefficient whose mean happens to be near zero (an MFCC of, say, 0.01 next to c0 = -400)
    can differ by more than 1e-4 of itself: hence the absolute tolerance of 1e-6 x the block's
    largest magnitude, 100x below the relative bound on the block's main values.
    """
    got = extract_file(data_dir / name, [feature_params("classic")])[0]
    want = seed_000_classic(data_dir / name)
    assert got.shape == want.shape == (180,) and got.dtype == np.float32
    for block in (slice(0, 40), slice(40, 52), slice(52, 180)):
        atol = 1e-6 * np.abs(want[block]).max()
        np.testing.assert_allclose(got[block], want[block], rtol=1e-4, atol=atol)


@pytest.mark.parametrize("name", REAL[:3])
def test_magnitude_is_librosa_stft(data_dir: Path, name: str) -> None:
    y = read_audio(data_dir / name)
    np.testing.assert_array_equal(_magnitude(y, n_fft=2048, hop_length=512), np.abs(librosa.stft(y)).T)


@pytest.mark.parametrize("name", REAL)
def test_tuning_estimate_equals_librosa(data_dir: Path, name: str) -> None:
    magnitude = _magnitude(read_audio(data_dir / name), n_fft=2048, hop_length=512)
    ours = _estimate_tuning(magnitude, sr=SR, n_fft=2048, bins_per_octave=12)
    assert ours == librosa.estimate_tuning(S=magnitude.T, sr=SR, bins_per_octave=12)


@settings(deadline=None)  # numba compiles on the first example: seconds on a loaded machine
@given(st.lists(st.floats(20.0, 8000.0, width=32), min_size=1, max_size=400))
def test_pitch_tuning_equals_librosa(freqs: list[float]) -> None:
    f = np.array(freqs, dtype=np.float32)
    assert _pitch_tuning(f, bins_per_octave=12) == librosa.pitch_tuning(f)


def test_mfcc_seq_is_librosa_mfcc_cut_to_length(data_dir: Path) -> None:
    y = read_audio(data_dir / REAL[1])
    full = librosa.feature.mfcc(y=y, sr=SR)  # the MFCC-sequence recipe: 20 coefficients
    assert full.shape[1] > 100
    (got,) = extract(y, SR, [feature_params("mfcc_seq", frames=100)])
    np.testing.assert_allclose(got, full[:, :100], rtol=1e-4, atol=1e-3)


def test_melspec_at_its_own_size_is_the_log_mel_image(data_dir: Path) -> None:
    y = read_audio(data_dir / REAL[5])
    image = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR), ref=np.max)
    (got,) = extract(y, SR, [feature_params("melspec", size=image.shape)])
    np.testing.assert_allclose(got, image, rtol=0, atol=1e-3)  # dB; the resize is the identity here


def test_yin_f0_equals_librosa_yin(data_dir: Path) -> None:
    y = read_audio(data_dir / REAL[2])
    f0, aperiodicity = yin(y, sr=SR, fmin=60.0, fmax=600.0, frame_length=1024, hop_length=512)
    want = librosa.yin(y, fmin=60.0, fmax=600.0, sr=SR, frame_length=1024, hop_length=512)
    np.testing.assert_allclose(f0, want, rtol=1e-4)
    assert aperiodicity.shape == f0.shape and (aperiodicity >= 0).all()


# --------------------------------------------------------------------------------------------------
# No librosa on the hot path: numpy re-implementations, bit for bit

# Modules a fresh process must not load for classic, mfcc_seq and melspec (1.2-1.9 s per Ray worker).
HEAVY = ("librosa", "numba", "scipy.signal")


def test_hot_path_imports_no_librosa_numba_or_scipy_signal(data_dir: Path) -> None:
    """A fresh process reads, resamples (48 kHz -> 22050 Hz) and extracts the three light sets."""
    code = f"""
import json, sys
from emotune.features._sets import extract_file, feature_params
out = extract_file({str(data_dir / REAL[0])!r}, [feature_params(s) for s in ("classic", "mfcc_seq", "melspec")])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r} or m.startswith({HEAVY!r}))
print(json.dumps({{"heavy": heavy, "shapes": [list(a.shape) for a in out]}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["shapes"] == [[180], [20, 236], [128, 128]]
    assert result["heavy"] == []


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels"),
    [
        (16000, 512, 40),
        (16000, 2048, 128),
        (22050, 1024, 64),
        (22050, 2048, 128),
        (24414, 2048, 128),
        (44100, 2048, 128),
        (44100, 4096, 224),
        (16000, 256, 128),  # empty filters: librosa's warning too
    ],
)
def test_mel_filterbank_is_librosa_mel(sr: int, n_fft: int, n_mels: int) -> None:
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        want = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        got = _dsp.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert bool(ours) == ((sr, n_fft) == (16000, 256))


@pytest.mark.parametrize("tuning", [0.0, -0.3, 0.41, -0.5, 0.49])
@pytest.mark.parametrize(
    ("sr", "n_fft", "n_chroma"),
    [
        (16000, 512, 12),
        (16000, 2048, 12),
        (22050, 2048, 12),
        (22050, 1024, 24),
        (44100, 2048, 12),
        (44100, 4096, 36),
    ],
)
def test_chroma_filterbank_is_librosa_chroma(sr: int, n_fft: int, n_chroma: int, tuning: float) -> None:
    want = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)
    got = _dsp.chroma_filterbank(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)
    assert got.dtype == want.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n", [1, 2, 3, 255, 256, 1024, 2048, 4096])
def test_hann_is_scipy_get_window(n: int) -> None:
    import scipy.signal

    np.testing.assert_array_equal(_dsp.hann(n), scipy.signal.get_window("hann", n, fftbins=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ref", [1.0, 0.25, np.max])
@pytest.mark.parametrize("top_db", [80.0, 30.0, None])
def test_power_to_db_is_librosa(dtype: type, ref: Any, top_db: float | None) -> None:
    rng = np.random.default_rng(3)
    S = (rng.exponential(1.0, (200, 128)) ** 6).astype(dtype)  # ~1e-12 .. 1e5: amin and top_db bite
    S[0, :5] = 0.0
    want = librosa.power_to_db(S, ref=ref, top_db=top_db)
    got = _dsp.power_to_db(S, ref=ref, top_db=top_db)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm", [np.inf, 2, 1, 3.5])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_normalize_is_librosa(dtype: type, norm: float, axis: int) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(0.0, 1.0, (60, 12)).astype(dtype)
    X[3], X[:, 5] = 0.0, 1e-39  # an all-zero row, a column below the smallest normal number
    want = librosa.util.normalize(X, norm=norm, axis=axis)
    got = _dsp.normalize(X, norm=norm, axis=axis)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------------
# Known answers


def test_a440_has_its_chroma_on_a_and_its_pitch_at_440() -> None:
    params = feature_params("classic_stats")
    stats = by_name(params, extract(tone(440.0), SR, [params])[0])
    chroma = {k: v for k, v in stats.items() if k.startswith("chroma_mean_")}
    assert max(chroma, key=chroma.__getitem__) == "chroma_mean_A"
    assert stats["f0_mean"] == pytest.approx(440.0, rel=0.01)
    assert stats["f0_median"] == pytest.approx(440.0, rel=0.01)
    assert stats["voiced_fraction"] > 0.9
    classic = extract(tone(440.0), SR, [feature_params("classic")])[0]
    assert int(np.argmax(classic[40:52])) == 9  # C C# D D# E F F# G G# A


@pytest.mark.parametrize("freq", [110.0, 196.0, 330.0])
def test_yin_follows_the_pitch_of_a_tone(freq: float) -> None:
    params = feature_params("classic_stats")
    stats = by_name(params, extract(tone(freq), SR, [params])[0])
    # librosa.yin itself reads pure tones ~0.6% high with 1024-sample frames (its difference
    # function uses a cumulative-energy approximation); within 1% is the method's accuracy.
    assert stats["f0_median"] == pytest.approx(freq, rel=0.01)


def test_pyin_when_asked() -> None:
    params = feature_params("classic_stats", f0="pyin")
    stats = by_name(params, extract(tone(220.0, seconds=0.5), SR, [params])[0])
    assert stats["f0_median"] == pytest.approx(220.0, rel=0.01) and stats["voiced_fraction"] > 0.7


def test_silence_and_noise_are_unvoiced() -> None:
    params = feature_params("classic_stats")
    silence = by_name(params, extract(np.zeros(SR, np.float32), SR, [params])[0])
    assert all(silence[k] == 0 for k in ("f0_mean", "f0_max", "voiced_fraction"))
    noise = np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32)
    assert by_name(params, extract(noise, SR, [params])[0])["voiced_fraction"] < 0.1


def test_a_chirp_moves_the_mel_peak_and_centroid_upwards() -> None:
    t = np.arange(2 * SR) / SR
    chirp = (0.5 * librosa.chirp(fmin=200, fmax=4000, duration=2.0, sr=SR)).astype(np.float32)
    assert chirp.shape == t.shape
    image = extract(chirp, SR, [feature_params("melspec")])[0]
    peaks = image.argmax(axis=0)[4:-4]  # mel band of the peak in each column, edges left out
    assert (np.diff(peaks) >= 0).all() and peaks[-1] - peaks[0] > 40
    params = feature_params("classic_stats")
    low = by_name(params, extract(tone(300.0), SR, [params])[0])
    high = by_name(params, extract(tone(3000.0), SR, [params])[0])
    rising = by_name(params, extract(chirp, SR, [params])[0])
    assert low["centroid_mean"] < rising["centroid_mean"] < high["centroid_mean"]
    assert rising["centroid_std"] > 10 * max(low["centroid_std"], high["centroid_std"])


def test_louder_is_more_rms_and_the_same_chroma() -> None:
    params = feature_params("classic_stats")
    quiet, loud = (by_name(params, extract(g * tone(262.0), SR, [params])[0]) for g in (0.1, 1.0))
    assert loud["rms_mean"] == pytest.approx(10 * quiet["rms_mean"], rel=1e-3)
    assert loud["chroma_mean_C"] == pytest.approx(quiet["chroma_mean_C"], abs=1e-4)


def test_functionals_extend_classic_stats_on_real_speech(data_dir: Path) -> None:
    stats_params, params = feature_params("classic_stats"), feature_params("functionals")
    for name in REAL[:3]:
        stats, functionals = extract_file(data_dir / name, [stats_params, params])
        assert np.array_equal(functionals[: stats.size], stats)
        assert np.isfinite(functionals).all() and functionals.shape == feature_shape(params)
        values = by_name(params, functionals)
        assert 0.2 < values["voiced_onsets_per_s"] < 10 and 0.02 < values["voiced_segment_s"] < 2
        assert -12 < values["f0_st_p50"] < 36  # 50-800 Hz, in semitones re 100 Hz


def test_functionals_follow_pitch_level_and_rhythm() -> None:
    params = feature_params("functionals")

    def values(y: np.ndarray) -> dict[str, float]:
        return by_name(params, extract(y, SR, [params])[0])

    steady = values(tone(220.0, seconds=2.0))
    assert steady["f0_st_p50"] == pytest.approx(12 * np.log2(2.2), abs=0.2)
    assert abs(steady["f0_st_slope"]) < 0.2 and steady["f0_st_std"] < 0.2
    glide = values(
        (0.5 * librosa.chirp(fmin=150, fmax=300, duration=2.0, sr=SR, linear=False)).astype(np.float32)
    )
    assert glide["f0_st_slope"] == pytest.approx(12.0, abs=1.5)  # one octave up over the file
    ramp = tone(220.0, seconds=2.0) * np.linspace(0.05, 1.0, 2 * SR, dtype=np.float32)
    assert values(ramp)["rms_db_slope"] > 15 > values(tone(220.0, seconds=2.0))["rms_db_slope"] > -1
    gap = np.zeros(SR // 4, np.float32)
    beeps = np.concatenate([np.concatenate([tone(220.0, seconds=0.25), gap]) for _ in range(4)])
    rhythm = values(beeps)
    assert rhythm["voiced_onsets_per_s"] == pytest.approx(2.0, abs=0.3)
    assert rhythm["voiced_segment_s"] == pytest.approx(0.25, abs=0.06)
    assert values(tone(300.0))["alpha_ratio_mean"] > 20 > -20 > values(tone(3000.0))["alpha_ratio_mean"]


def test_skew_and_kurtosis_are_scipys() -> None:
    import scipy.stats

    from emotune.features._stats import _skew_kurtosis

    x = np.random.default_rng(1).normal(size=(300, 4)) ** 3
    x[:, 3] = -7.25  # a constant column has neither: 0
    skew, kurtosis = _skew_kurtosis(x)
    np.testing.assert_allclose(skew[:3], scipy.stats.skew(x[:, :3], axis=0))
    np.testing.assert_allclose(kurtosis[:3], scipy.stats.kurtosis(x[:, :3], axis=0))
    assert skew[3] == kurtosis[3] == 0


# --------------------------------------------------------------------------------------------------
# mfcc_seq padding, melspec resizing


@pytest.mark.parametrize("pad", PAD_MODES)
def test_mfcc_seq_padding_modes(pad: str) -> None:
    y = np.random.default_rng(1).normal(0, 0.1, 512 * 9).astype(np.float32)  # 10 frames
    short = extract(y, SR, [feature_params("mfcc_seq", frames=10)])[0]
    padded = extract(y, SR, [feature_params("mfcc_seq", frames=25, pad=pad)])[0]
    assert padded.shape == (20, 25)
    np.testing.assert_array_equal(padded[:, :10], short)
    tail = padded[:, 10:]
    expected = {
        "constant": np.zeros_like(tail),
        "edge": np.repeat(short[:, -1:], 15, axis=1),
        "median": np.repeat(np.median(short, axis=1, keepdims=True), 15, axis=1),
        "wrap": np.concatenate([short, short[:, :5]], axis=1),
    }[pad]
    np.testing.assert_allclose(tail, expected, rtol=1e-6, atol=1e-5)


def test_mfcc_seq_truncates_to_the_first_frames(data_dir: Path) -> None:
    y = read_audio(data_dir / REAL[0])
    long, short = extract(
        y, SR, [feature_params("mfcc_seq", frames=300), feature_params("mfcc_seq", frames=50)]
    )
    np.testing.assert_array_equal(short, long[:, :50])


def test_resize_weights() -> None:
    np.testing.assert_array_equal(_resize_weights(7, 7), np.eye(7, dtype=np.float32))
    for n_in, n_out in [(1, 128), (3, 224), (150, 128), (1000, 224), (128, 224)]:
        w = _resize_weights(n_in, n_out)
        assert w.shape == (n_out, n_in) and (w >= 0).all()
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-6)
    ramp = np.arange(100, dtype=np.float32)
    np.testing.assert_allclose((_resize_weights(100, 50) @ ramp)[1:-1], np.arange(1, 49) * 2 + 0.5, rtol=1e-5)


def test_vgg_sized_melspec(data_dir: Path) -> None:
    image = extract_file(data_dir / REAL[3], [feature_params("melspec", size=(224, 224))])[0]
    assert image.shape == (224, 224) and image.dtype == np.float32
    assert image.max() <= 0.0 and image.min() >= -80.0 - 1e-3  # dB re the maximum, top_db 80


# --------------------------------------------------------------------------------------------------
# One STFT for every set


def test_extract_several_sets_equals_each_alone(data_dir: Path) -> None:
    y = read_audio(data_dir / REAL[4])
    plist = [feature_params(name) for name in AUDIO_SETS] + [feature_params("mfcc_seq", n_mfcc=13, frames=50)]
    together = extract(y, SR, plist)
    for params, got in zip(plist, together, strict=True):
        np.testing.assert_array_equal(got, extract(y, SR, [params])[0])


def test_extract_file_equals_read_audio_then_extract(data_dir: Path) -> None:
    plist = [feature_params("classic", sr=16000), feature_params("melspec", sr=16000)]
    y = read_audio(data_dir / REAL[5], sr=16000)
    for a, b in zip(extract_file(data_dir / REAL[5], plist), extract(y, 16000, plist), strict=True):
        np.testing.assert_array_equal(a, b)


def test_extract_leaves_the_blas_threads_as_it_found_them() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    params = [feature_params("classic")]
    extract(tone(440.0), SR, params)  # loads every library extract() uses
    before = blas_threads()
    extract(tone(330.0), SR, params)
    assert blas_threads() == before
    with ThreadPoolExecutor(3) as pool:  # other threads do not touch the setting
        list(pool.map(lambda f: extract(tone(f), SR, params), [220.0, 330.0, 440.0] * 3))
    assert blas_threads() == before


def test_extract_is_thread_safe() -> None:
    """Cached filterbanks are shared read-only; each call owns its analysis.

    Equal to float32 rounding, not bit for bit: outside the main thread BLAS may split the chroma
    product across its threads, which changes the summation order.
    """
    from concurrent.futures import ThreadPoolExecutor

    plist = [feature_params(name) for name in AUDIO_SETS]
    freqs = [220.0, 330.0, 440.0] * 4
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda f: extract(tone(f), SR, plist), freqs))
    for f, got in zip(freqs, results, strict=True):
        for a, b in zip(got, extract(tone(f), SR, plist), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max())


@settings(max_examples=30, deadline=None)
@given(
    n=st.one_of(st.integers(1, 600), st.integers(600, 60000)),
    sr=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
    kind=st.sampled_from(["noise", "silence", "tiny", "tone", "impulse", "dc", "clipped"]),
    seed=st.integers(0, 2**16),
)
def test_every_set_is_finite_float32_of_fixed_shape(n: int, sr: int, kind: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = {
        "noise": rng.normal(0, 0.3, n),
        "silence": np.zeros(n),
        "tiny": rng.normal(0, 1e-30, n),
        "tone": np.sin(2 * np.pi * rng.uniform(50, sr / 2) * np.arange(n) / sr),
        "impulse": np.eye(1, n, int(rng.integers(n)))[0],
        "dc": np.ones(n),
        "clipped": np.clip(rng.normal(0, 5, n), -1, 1),
    }[kind].astype(np.float32)
    # The default spectral contrast spans 200 Hz x 2^5 = 6.4 kHz: fewer octaves at low rates.
    bands = max(b for b in range(1, 7) if 200 * 2 ** (b - 1) < sr / 2)
    plist = [
        feature_params("classic", sr=sr),
        feature_params("classic_stats", sr=sr, contrast_bands=bands),
        feature_params("functionals", sr=sr, contrast_bands=bands),
        feature_params("mfcc_seq", sr=sr),
        feature_params("melspec", sr=sr),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no librosa or numpy warning on any input either
        outputs = extract(y, sr, plist)
    for params, out in zip(plist, outputs, strict=True):
        assert out.dtype == np.float32 and out.shape == feature_shape(params)
        assert np.isfinite(out).all(), params["set"]


# --------------------------------------------------------------------------------------------------
# Parameters


def test_defaults_and_shapes() -> None:
    assert FEATURE_SETS == (
        "classic",
        "classic_stats",
        "functionals",
        "mfcc_seq",
        "melspec",
        "vgg16_bottleneck",
        "ssl",
    )
    assert AUDIO_SETS == ("classic", "classic_stats", "functionals", "mfcc_seq", "melspec")
    for name in AUDIO_SETS:  # vgg16_bottleneck needs a weights_sha256: tests/features/test_vgg_bottleneck.py
        params = feature_params(name)
        assert params["set"] == name and isinstance(params["version"], int)
        assert (params["sr"], params["n_fft"], params["hop_length"]) == (22050, 2048, 512)
        assert json.loads(json.dumps(params)) == params
        stored = json.loads(json.dumps(params))  # as a cache or a study keeps it
        assert stored == params and feature_params(name, **stored) == params
    assert feature_shape("classic") == (180,)
    assert feature_shape("mfcc_seq") == (20, 236)
    assert feature_shape("melspec") == (128, 128)
    assert feature_shape("melspec", size=224) == (224, 224)
    assert feature_shape(feature_params("mfcc_seq", frames=100)) == (20, 100)


def test_columns() -> None:
    classic = feature_columns("classic")
    assert len(classic) == 180 and classic[0] == "mfcc_mean_0" and classic[49] == "chroma_mean_A"
    stats = feature_columns("classic_stats")
    assert len(stats) == len(set(stats)) == feature_shape("classic_stats")[0]
    for name in ("mfcc_delta_std_39", "logmel_mean_127", "contrast_std_6", "tonnetz_mean_major_y"):
        assert name in stats
    assert stats[-7:] == ["f0_mean", "f0_std", "f0_min", "f0_max", "f0_range", "f0_median", "voiced_fraction"]
    assert len(feature_columns("classic_stats", n_mfcc=13, n_mels=64)) == len(stats) - 4 * 27 - 2 * 64
    with pytest.raises(FeatureError, match="mfcc_seq.*no column names"):
        feature_columns("mfcc_seq")
    functionals = feature_columns("functionals")
    assert functionals[: len(stats)] == stats and len(functionals) == len(set(functionals)) == 886
    assert feature_shape("functionals") == (886,)
    for name in ("mfcc_delta2_std_39", "mfcc_kurt_0", "slope_p90", "f0_st_slope", "mfcc_voiced_mean_3"):
        assert name in functionals
    assert functionals[-1] == "aperiodicity_mean"
    assert len(feature_columns("functionals", n_mfcc=13)) == len(functionals) - (4 + 2 + 5 + 2) * 27


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("mfcc", {}, "unknown feature set 'mfcc'"),
        ("classic", {"n_ftt": 1024}, "unknown parameter 'n_ftt'"),
        ("classic", {"n_fft": 0}, "n_fft=0"),
        ("classic", {"hop_length": 2.5}, "hop_length=2.5"),
        ("classic", {"sr": 500}, "sr=500"),
        ("classic", {"n_mels": True}, "n_mels=True"),
        ("classic", {"n_mfcc": 200}, "n_mfcc=200 must not exceed n_mels=128"),
        ("mfcc_seq", {"pad": "zeros"}, "pad='zeros'"),
        ("mfcc_seq", {"frames": 0}, "frames=0"),
        ("melspec", {"size": (224, 0)}, r"size=\(224, 0\)"),
        ("melspec", {"top_db": -1}, "top_db=-1"),
        ("classic_stats", {"f0": "crepe"}, "f0='crepe'"),
        ("classic_stats", {"sr": 8000}, "contrast_bands=6"),
        ("classic_stats", {"f0_fmin": 20.0}, "f0_fmin=20.0"),
        ("classic_stats", {"f0_fmax": 20000.0}, "f0_fmax=20000.0"),
        ("classic_stats", {"f0_fmin": 300.0, "f0_fmax": 200.0}, "f0_fmin=300.0 must be below"),
        ("classic_stats", {"delta_width": 4}, "delta_width=4"),
        ("functionals", {"delta_width": 4}, "functionals: .*delta_width=4"),
        ("functionals", {"f0_fmin": 300.0, "f0_fmax": 200.0}, "functionals: f0_fmin=300.0 must be below"),
        ("classic_stats", {"f0_voicing_threshold": float("nan")}, "f0_voicing_threshold=nan"),
        ("classic", {"version": 0}, "version=0"),
        ("classic", {"set": "melspec"}, "set='melspec'"),
    ],
)
def test_bad_params_name_the_setting(name: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(FeatureError, match=message) as excinfo:
        feature_params(name, **overrides)
    assert "\n" not in str(excinfo.value)


def test_extract_refuses_inconsistent_calls() -> None:
    y = tone(440.0)
    with pytest.raises(FeatureError, match="n_fft=1024 differs"):
        extract(y, SR, [feature_params("classic"), feature_params("melspec", n_fft=1024)])
    with pytest.raises(FeatureError, match="sr=16000 but the params ask for sr=22050"):
        extract(y, 16000, [feature_params("classic")])
    with pytest.raises(FeatureError, match="list of feature_params"):
        extract(y, SR, feature_params("classic"))  # type: ignore[arg-type]
    with pytest.raises(FeatureError, match="empty"):
        extract(y, SR, [])
    with pytest.raises(FeatureError, match="unknown parameter"):
        extract(y, SR, [{**feature_params("classic"), "extra": 1}])
    with pytest.raises(FeatureError, match="non-empty 1-D"):
        extract(np.zeros((2, 100), np.float32), SR, [feature_params("classic")])
    with pytest.raises(FeatureError, match="non-empty 1-D"):
        extract(np.zeros(0, np.float32), SR, [feature_params("classic")])
    with pytest.raises(FeatureError, match="NaN or inf"):
        extract(np.full(100, np.nan, np.float32), SR, [feature_params("classic")])
