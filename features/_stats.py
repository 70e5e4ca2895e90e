"""The statistics sets' columns and extraction: ``classic_stats`` and ``functionals``.

Both are functionals (per-file statistics over frames) of one :class:`~emotune.features._analysis.Analysis`
of a file, the shared STFT and what is derived from it; :mod:`emotune.features._sets` holds their
parameters and dispatches to :func:`classic_stats` and :func:`functionals`. librosa is imported
inside the functions (delta, spectral contrast, tonnetz, spectral shape, pYIN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from emotune.features._analysis import Analysis

__all__ = ["chroma_names", "classic_stats", "functional_columns", "functionals", "stats_columns", "yin"]

_CHROMA_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_TONNETZ_NAMES = ("fifth_x", "fifth_y", "minor_x", "minor_y", "major_x", "major_y")
_F0_STATS = ("f0_mean", "f0_std", "f0_min", "f0_max", "f0_range", "f0_median", "voiced_fraction")


def chroma_names(n_chroma: int) -> list[str]:
    return list(_CHROMA_NAMES) if n_chroma == 12 else [str(i) for i in range(n_chroma)]


def stats_columns(p: Mapping[str, Any]) -> list[str]:
    """``classic_stats`` columns, block by block (mean then std over frames unless noted):

    - ``mfcc_{mean,std}_{i}``: MFCC 0..n_mfcc-1 (as in ``classic``).
    - ``mfcc_delta_{mean,std}_{i}``: their first derivative (Savitzky-Golay, ``delta_width`` frames,
      edges by nearest-frame padding so that any length works).
    - ``chroma_{mean,std}_{C..B}``: chroma from the magnitude, each frame scaled to max 1.
    - ``logmel_{mean,std}_{i}``: mel bands in dB (ref 1.0, clipped 80 dB below the file's maximum).
    - ``contrast_{mean,std}_{k}``: spectral contrast (dB) of ``contrast_bands`` octave bands from
      ``contrast_fmin`` plus the band above them.
    - ``tonnetz_{mean,std}_{fifth,minor,major}_{x,y}``: tonal centroids from the same chroma (no CQT).
    - ``zcr_{mean,std}``, ``rms_{mean,std}``, ``centroid_{mean,std}``: zero-crossing rate per frame,
      RMS from the spectrum, spectral centroid in Hz.
    - ``f0_{mean,std,min,max,range,median}`` in Hz over voiced frames, and ``voiced_fraction``:
      f0 by YIN (or pYIN when ``f0="pyin"``) between ``f0_fmin`` and ``f0_fmax`` on frames of
      ``f0_frame_length`` samples centred on the STFT frames. YIN takes the first dip of the
      normalised difference below ``f0_trough_threshold`` (else its minimum) as the period, as
      ``librosa.yin``; the frame is voiced when the difference there (its aperiodicity) is below
      ``f0_voicing_threshold`` (pYIN: its own voicing decision) and its RMS is within
      ``f0_gate_db`` of the loudest frame. All zero when no frame is voiced.
    """
    cols: list[str] = []
    for block, names in (
        ("mfcc", range(p["n_mfcc"])),
        ("mfcc_delta", range(p["n_mfcc"])),
        ("chroma", chroma_names(p["n_chroma"])),
        ("logmel", range(p["n_mels"])),
        ("contrast", range(p["contrast_bands"] + 1)),
        ("tonnetz", _TONNETZ_NAMES),
    ):
        for stat in ("mean", "std"):
            cols += [f"{block}_{stat}_{n}" for n in names]
    for block in ("zcr", "rms", "centroid"):
        cols += [f"{block}_mean", f"{block}_std"]
    return cols + list(_F0_STATS)


_SHAPE_SERIES = ("log_flatness", "log_rolloff", "log_bandwidth", "log_flux", "slope")
_FIVE = ("mean", "std", "p10", "p50", "p90")
_DISTRIBUTION = ("p10", "p50", "p90", "skew", "kurt")


def functional_columns(p: Mapping[str, Any]) -> list[str]:
    """``functionals`` columns after ``classic_stats``' own, block by block:

    - ``mfcc_delta2_{mean,std}_{i}``: second derivative of the MFCC (``delta_width`` frames).
    - ``mfcc_{p10,p50,p90,skew,kurt}_{i}``: the shape of each MFCC's distribution over frames
      (percentiles, skewness, excess kurtosis).
    - ``{log_flatness,log_rolloff,log_bandwidth,log_flux,slope}_{mean,std,p10,p50,p90}``: spectral
      shape per frame: log spectral flatness, log 85% roll-off (Hz), log bandwidth (Hz), log positive
      spectral flux, and the slope of the log magnitude over 0-5 kHz (per kHz).
    - ``f0_st_{mean,std,p10,p50,p90,slope,delta_mean,delta_p90}``: f0 in semitones re 100 Hz over
      voiced frames, its linear trend over the voiced frames (semitones per file) and its frame-to-frame
      change; ``rms_db_{mean,std,p10,p50,p90,slope,delta_mean}``: frame level in dB re the loudest
      frame (clipped at -80 dB), the same way; ``voiced_onsets_per_s``, ``voiced_segment_s``: how many
      voiced stretches start per second and their mean length (a speaking-rate proxy).
    - ``mfcc_voiced_{mean,std}_{i}``: MFCC statistics over the voiced frames only.
    - ``alpha_ratio_{mean,std}``, ``hammarberg_{mean,std}``: voiced frames' energy in 50-1000 Hz over
      1-5 kHz, and their strongest bin below 2 kHz over that in 2-5 kHz (dB, as in eGeMAPS);
      ``aperiodicity_mean``: the mean aperiodicity of the voiced frames.

    Without voiced frames the f0 block is zero and the voiced blocks use every frame.
    """
    n = range(p["n_mfcc"])
    cols = [f"mfcc_delta2_{stat}_{i}" for stat in ("mean", "std") for i in n]
    cols += [f"mfcc_{stat}_{i}" for stat in _DISTRIBUTION for i in n]
    cols += [f"{series}_{stat}" for series in _SHAPE_SERIES for stat in _FIVE]
    cols += [f"f0_st_{stat}" for stat in (*_FIVE, "slope", "delta_mean", "delta_p90")]
    cols += [f"rms_db_{stat}" for stat in (*_FIVE, "slope", "delta_mean")]
    cols += ["voiced_onsets_per_s", "voiced_segment_s"]
    cols += [f"mfcc_voiced_{stat}_{i}" for stat in ("mean", "std") for i in n]
    return cols + [
        "alpha_ratio_mean",
        "alpha_ratio_std",
        "hammarberg_mean",
        "hammarberg_std",
        "aperiodicity_mean",
    ]


def classic_stats(an: Analysis, p: Mapping[str, Any]) -> np.ndarray:
    import librosa

    mfcc = an.mfcc(p["n_mfcc"], p["n_mels"])
    delta = librosa.feature.delta(mfcc, width=p["delta_width"], axis=0, mode="nearest")
    chroma = an.chroma(p["n_chroma"])
    magnitude_ft = an.magnitude.T  # librosa's (freq, time) layout
    contrast = librosa.feature.spectral_contrast(
        S=magnitude_ft, sr=an.sr, n_fft=an.n_fft, fmin=p["contrast_fmin"], n_bands=p["contrast_bands"]
    ).T
    tonnetz = librosa.feature.tonnetz(chroma=chroma.T).T
    zcr = librosa.feature.zero_crossing_rate(an.y, frame_length=an.n_fft, hop_length=an.hop_length)[0]
    # Spectral centroid: the magnitude-weighted mean frequency of each frame (0 for silent frames).
    weight = an.magnitude.sum(axis=1, dtype=np.float64)
    centroid = np.zeros_like(weight)
    freqs = np.fft.rfftfreq(an.n_fft, d=1.0 / an.sr).astype(np.float32)
    np.divide(an.magnitude @ freqs, weight, out=centroid, where=weight > 0)
    blocks = [mfcc, delta, chroma, an.log_mel(p["n_mels"]), contrast, tonnetz]
    parts: list[np.ndarray] = []
    for block in blocks:
        parts += [block.mean(axis=0, dtype=np.float64), block.std(axis=0, dtype=np.float64)]
    for series in (zcr, an.rms, centroid):
        parts.append(np.array([series.mean(dtype=np.float64), series.std(dtype=np.float64)]))
    parts.append(_f0_stats(an, p))
    return np.concatenate(parts).astype(np.float32)


def _f0_stats(an: Analysis, p: Mapping[str, Any]) -> np.ndarray:
    """[shape=(7,)] f0 mean, std, min, max, range, median (Hz, voiced frames) and voiced fraction."""
    f0, voiced, _ = _voicing(an, p)
    if not voiced.any():
        return np.zeros(len(_F0_STATS))
    v = f0[voiced].astype(np.float64)
    lo, hi = v.min(), v.max()
    return np.array([v.mean(), v.std(), lo, hi, hi - lo, np.median(v), voiced.mean()])


def _voicing(an: Analysis, p: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f0 (Hz), the voiced frames and each frame's aperiodicity (0 periodic .. ~1 noise), once per analysis.

    Voiced: YIN's aperiodicity below ``f0_voicing_threshold`` (pYIN: its own decision, and
    aperiodicity ``1 - voiced probability``), and RMS within ``f0_gate_db`` of the loudest frame.
    """
    keys = (
        "f0",
        "f0_fmin",
        "f0_fmax",
        "f0_frame_length",
        "f0_trough_threshold",
        "f0_voicing_threshold",
        "f0_gate_db",
    )

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if p["f0"] == "pyin":
            import librosa

            f0, voiced, probability = librosa.pyin(
                an.y, fmin=p["f0_fmin"], fmax=p["f0_fmax"], sr=an.sr, frame_length=p["f0_frame_length"],
                hop_length=an.hop_length,
            )  # fmt: skip
            voiced &= np.isfinite(f0)
            aperiodicity = 1.0 - np.nan_to_num(probability)
        else:
            f0, aperiodicity = yin(
                an.y, sr=an.sr, fmin=p["f0_fmin"], fmax=p["f0_fmax"], frame_length=p["f0_frame_length"],
                hop_length=an.hop_length, trough_threshold=p["f0_trough_threshold"],
            )  # fmt: skip
            voiced = aperiodicity < p["f0_voicing_threshold"]
        rms = an.rms  # frames centred on the same samples as f0's (same hop, both centred)
        voiced &= (rms > 0) & (rms >= rms.max() * 10.0 ** (-p["f0_gate_db"] / 20.0))
        return f0, voiced, aperiodicity

    return an.once(("voicing", *(p[k] for k in keys)), compute)


def functionals(an: Analysis, p: Mapping[str, Any]) -> np.ndarray:
    """The columns of :func:`functional_columns` (what ``functionals`` adds to ``classic_stats``)."""
    import librosa

    mfcc = an.mfcc(p["n_mfcc"], p["n_mels"]).astype(np.float64)  # (t, n_mfcc)
    delta2 = librosa.feature.delta(mfcc, width=p["delta_width"], order=2, axis=0, mode="nearest")
    parts = [delta2.mean(axis=0), delta2.std(axis=0), *np.percentile(mfcc, [10, 50, 90], axis=0)]
    parts += _skew_kurtosis(mfcc)
    parts += [_five(series) for series in _spectral_shape(an)]
    f0, voiced, aperiodicity = _voicing(an, p)
    parts += [_f0_contour(f0[voiced]), _level_contour(an.rms), _voiced_runs(voiced, an.hop_length / an.sr)]
    frames = voiced if voiced.sum() >= 2 else np.ones_like(voiced)
    parts += [mfcc[frames].mean(axis=0), mfcc[frames].std(axis=0)]
    alpha, hammarberg = _voice_quality(an, frames)
    mean_aperiodicity = float(np.mean(aperiodicity[voiced])) if voiced.any() else 1.0
    parts.append(
        np.array([alpha.mean(), alpha.std(), hammarberg.mean(), hammarberg.std(), mean_aperiodicity])
    )
    return np.nan_to_num(np.concatenate(parts), nan=0.0, posinf=0.0, neginf=0.0)


def _skew_kurtosis(x: np.ndarray) -> list[np.ndarray]:
    """Skewness and excess kurtosis of each column (biased moments, as scipy.stats' defaults).

    A column that is constant up to rounding (e.g. silence) has neither: 0 for both.
    """
    centred = x - x.mean(axis=0)
    m2 = np.mean(centred**2, axis=0)
    flat = m2 <= 1e-12 * np.maximum(np.mean(x**2, axis=0), 1e-30)
    m2 = np.where(flat, 1.0, m2)
    skew = np.mean(centred**3, axis=0) / m2**1.5
    kurtosis = np.mean(centred**4, axis=0) / m2**2 - 3.0
    return [np.where(flat, 0.0, skew), np.where(flat, 0.0, kurtosis)]


def _five(v: np.ndarray) -> np.ndarray:
    """Mean, std and 10th/50th/90th percentiles of a series."""
    v = np.asarray(v, dtype=np.float64)
    return np.r_[v.mean(), v.std(), np.percentile(v, [10, 50, 90])]


def _trend(v: np.ndarray) -> float:
    """Least-squares slope of a series over its length (change per file); 0 under two points."""
    if len(v) < 2:
        return 0.0
    return float(np.polyfit(np.linspace(0.0, 1.0, len(v)), v, 1)[0])


def _spectral_shape(an: Analysis) -> list[np.ndarray]:
    """Per-frame log flatness, log roll-off, log bandwidth, log positive flux and 0-5 kHz slope."""
    import librosa

    S = an.magnitude.T  # (freq, t), librosa's layout
    tiny = 1e-10
    freqs = np.fft.rfftfreq(an.n_fft, d=1.0 / an.sr)
    flatness = librosa.feature.spectral_flatness(S=S)[0]
    rolloff = librosa.feature.spectral_rolloff(S=S, sr=an.sr, n_fft=an.n_fft)[0]
    bandwidth = librosa.feature.spectral_bandwidth(S=S, sr=an.sr, n_fft=an.n_fft)[0]
    flux = np.r_[0.0, np.sqrt(np.square(np.diff(S, axis=1).clip(min=0)).sum(axis=0, dtype=np.float64))]
    band = (freqs > 0) & (freqs < 5000)
    slope = np.polyfit(freqs[band] / 1000.0, np.log(S[band].astype(np.float64) + tiny), 1)[0]
    return [np.log(flatness + tiny), np.log1p(rolloff), np.log1p(bandwidth), np.log(flux + 1e-6), slope]


def _f0_contour(f0_voiced: np.ndarray) -> np.ndarray:
    """Semitone statistics of the voiced frames' f0 (zeros under two voiced frames)."""
    if len(f0_voiced) < 2:
        return np.zeros(8)
    semitones = 12.0 * np.log2(f0_voiced.astype(np.float64) / 100.0)
    change = np.abs(np.diff(semitones))
    return np.r_[_five(semitones), _trend(semitones), change.mean(), np.percentile(change, 90)]


def _level_contour(rms: np.ndarray) -> np.ndarray:
    """dB statistics of the frame level re the loudest frame (floor -80 dB)."""
    level = 20.0 * np.log10(np.maximum(rms.astype(np.float64), 1e-10) / max(float(rms.max()), 1e-10))
    level = np.maximum(level, -80.0)
    return np.r_[_five(level), _trend(level), np.abs(np.diff(level)).mean() if len(level) > 1 else 0.0]


def _voiced_runs(voiced: np.ndarray, frame_s: float) -> np.ndarray:
    """Voiced stretches started per second, and their mean length in seconds.

    The voicing is smoothed first by a 3-frame majority vote, so that a frame voiced alone at the
    edge of a stretch, or one unvoiced frame inside it, does not count as a stretch of its own.
    """
    padded = np.r_[voiced[:1], voiced, voiced[-1:]].astype(np.int8)
    voiced = (padded[:-2] + padded[1:-1] + padded[2:]) >= 2
    edges = np.diff(np.r_[0, voiced.astype(np.int8), 0])
    starts = int((edges == 1).sum())
    seconds = len(voiced) * frame_s
    return np.array([starts / seconds, voiced.sum() * frame_s / starts if starts else 0.0])


def _voice_quality(an: Analysis, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alpha ratio and Hammarberg index (dB) of the given frames."""
    freqs = np.fft.rfftfreq(an.n_fft, d=1.0 / an.sr)
    power = an.power[frames].astype(np.float64) + 1e-10  # (frames, freq)
    low, high = (freqs >= 50) & (freqs < 1000), (freqs >= 1000) & (freqs < 5000)
    alpha = 10.0 * np.log10(power[:, low].sum(axis=1) / power[:, high].sum(axis=1))
    below, above = freqs < 2000, (freqs >= 2000) & (freqs < 5000)
    hammarberg = 10.0 * np.log10(power[:, below].max(axis=1) / power[:, above].max(axis=1))
    return alpha, hammarberg


def yin(
    y: np.ndarray,
    *,
    sr: int,
    fmin: float,
    fmax: float,
    frame_length: int = 2048,
    hop_length: int = 512,
    trough_threshold: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.yin`` (same framing, difference function and period choice), plus aperiodicity.

    librosa.yin takes the first dip of the cumulative mean normalised difference below
    ``trough_threshold``, else its global minimum, and does not say how periodic the frame was;
    the value of the difference at the chosen period (0 for a perfectly periodic frame, about 1
    for noise) is returned here for a voicing decision.

    Returns:
        f0: [shape=(t,), float32] Hz, t = 1 + len(y) // hop_length.
        aperiodicity: [shape=(t,)] the normalised difference at the chosen period.
    """
    import scipy.fft

    half = frame_length // 2
    padded = np.pad(y, (half, half))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]  # (t, L)
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame_length - 1)

    # Cumulative mean normalised difference (de Cheveigne & Kawahara 2002, eq. 8), as librosa.
    n_pad = scipy.fft.next_fast_len(2 * frame_length - 1, real=True)
    spectrum = scipy.fft.rfft(frames, n=n_pad, axis=1)
    acf = scipy.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n_pad, axis=1)[:, : max_period + 1]
    energy = np.cumsum(np.square(frames), axis=1)
    diff = 2 * (acf[:, :1] - acf[:, 1:]) - energy[:, :max_period]  # lags 1..max_period
    cum_mean = np.cumsum(diff, axis=1) / np.arange(1, max_period + 1)
    num = diff[:, min_period - 1 :]
    den = cum_mean[:, min_period - 1 :]
    cmnd = num / (den + np.finfo(den.dtype).tiny)  # lags min_period..max_period, at least 2

    inner = cmnd[:, 1:-1]
    trough = np.zeros_like(cmnd, dtype=bool)
    trough[:, 1:-1] = (inner < cmnd[:, :-2]) & (inner <= cmnd[:, 2:])
    trough[:, 0] = cmnd[:, 0] < cmnd[:, 1]
    below = trough & (cmnd < trough_threshold)
    idx = np.where(below.any(axis=1), np.argmax(below, axis=1), np.argmin(cmnd, axis=1))

    # Parabolic interpolation around the chosen lag; none at the ends of the lag range.
    rows = np.arange(cmnd.shape[0])
    inside = (idx > 0) & (idx < cmnd.shape[1] - 1)
    left = cmnd[rows, np.maximum(idx - 1, 0)].astype(np.float64)
    mid = cmnd[rows, idx].astype(np.float64)
    right = cmnd[rows, np.minimum(idx + 1, cmnd.shape[1] - 1)].astype(np.float64)
    a = right + left - 2 * mid
    b = (right - left) / 2
    shift = np.zeros_like(a)
    np.divide(-b, a, out=shift, where=inside & (np.abs(b) < np.abs(a)))
    period = min_period + idx + shift.astype(cmnd.dtype)
    return (sr / period).astype(np.float32), mid
