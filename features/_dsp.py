"""The few librosa / scipy.signal building blocks feature extraction needs, in plain numpy.

Importing librosa costs a fresh process 1.2-1.9 CPU-seconds (numba, scipy.signal, its own
modules), which every Ray worker of a cold ``features build`` would pay for a handful of
filterbanks it computes once. These functions repeat librosa 0.11's (and scipy 1.17's) arithmetic
operation for operation, in the same floating-point types, so they return the same arrays bit for
bit (tested against both libraries): cached features do not change.

Only what :mod:`emotune.features._sets` uses is here, with librosa's defaults as fixed choices
(slaney mel scale and norm from 0 Hz to Nyquist, chroma with ``ctroct=5``, ``octwidth=2``,
``norm=2``, ``base_c=True``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

__all__ = ["chroma_filterbank", "hann", "mel_filterbank", "normalize", "power_to_db"]

# Slaney's mel scale (librosa.hz_to_mel with htk=False): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP


def hann(n: int) -> np.ndarray:
    """[shape=(n,), float64] ``scipy.signal.get_window("hann", n, fftbins=True)``.

    The periodic Hann window: the first ``n`` samples of the symmetric window of ``n + 1``.

    Args:
        n: Window length, ``n >= 0``.
    """
    if n <= 1:
        return np.ones(n, dtype=np.float64)
    fac = np.linspace(-np.pi, np.pi, n + 1, dtype=np.float64)
    w = np.zeros(n + 1, dtype=np.float64)
    for k, a in enumerate((0.5, 0.5)):  # general_cosine with a = [0.5, 0.5], summed in this order
        w += a * np.cos(k * fac)
    return w[:-1]


def _hz_to_mel(hz: float) -> float:
    """``librosa.hz_to_mel(hz)`` (slaney) for one frequency."""
    f = np.asanyarray(hz)
    mel = f / _F_SP
    if f >= _MIN_LOG_HZ:
        mel = _MIN_LOG_MEL + np.log(f / _MIN_LOG_HZ) / (np.log(6.4) / 27.0)
    return float(mel)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """``librosa.mel_to_hz(mels)`` (slaney) for a 1-D array."""
    freqs = _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    freqs[log_t] = _MIN_LOG_HZ * np.exp(np.log(6.4) / 27.0 * (mels[log_t] - _MIN_LOG_MEL))
    return freqs


def mel_filterbank(*, sr: float, n_fft: int, n_mels: int = 128) -> np.ndarray:
    """[shape=(n_mels, 1 + n_fft // 2), float32] ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)``.

    Triangular filters on the slaney mel scale from 0 Hz to ``sr / 2``, each scaled by
    ``2 / bandwidth`` (slaney norm), so every channel has about the same energy.

    Args:
        sr: Sample rate in Hz.
        n_fft: FFT length.
        n_mels: Number of mel bands.

    Warns:
        UserWarning: as librosa, when a filter falls between FFT bins and is all zero.
    """
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(float(sr) / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:n_mels] / fdiff[:n_mels, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]  # float64 products rounded to float32, as librosa's in-place *=
    if not np.all((mel_f[:-2] == 0) | (weights.max(axis=1) > 0)):
        warnings.warn(
            "Empty filters detected in mel frequency basis. Some channels will produce empty "
            "responses. Try increasing your sampling rate (and fmax) or reducing n_mels.",
            stacklevel=2,
        )
    return weights


def chroma_filterbank(*, sr: float, n_fft: int, n_chroma: int = 12, tuning: float = 0.0) -> np.ndarray:
    """[shape=(n_chroma, 1 + n_fft // 2), float32] ``librosa.filters.chroma(sr=..., n_fft=..., n_chroma=..., tuning=...)``.

    Gaussian bumps around each pitch class (two bins wide per semitone), each FFT bin's weights
    scaled to unit L2 norm, then weighted by a Gaussian of two octaves around C5; rows start at C.

    Args:
        sr: Sample rate in Hz.
        n_fft: FFT length.
        n_chroma: Bins per octave.
        tuning: Deviation from A440 in fractions of a chroma bin.
    """
    ctroct, octwidth = 5.0, 2.0
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (float(a440) / 16))
    # 0 Hz gets a bin 1.5 octaves below bin 1: 50% rotated, broad.
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    D = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    D = np.remainder(D + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * D / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    wts = normalize(wts, norm=2, axis=0)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)


def normalize(S: np.ndarray, *, norm: float = np.inf, axis: int = 0) -> np.ndarray:
    """``librosa.util.normalize(S, norm=norm, axis=axis)``: unit ``norm`` along ``axis``.

    Slices whose norm is below the smallest normal number of ``S``'s dtype are left as they are.

    Args:
        S: Finite real array (librosa checks; callers here pass finite data).
        norm: ``np.inf`` (maximum absolute value) or a positive number p (L-p norm).
        axis: Axis to normalize along.

    Returns:
        An array of ``S``'s shape and dtype.
    """
    mag = np.abs(S).astype(float)
    if norm == np.inf:
        length = np.max(mag, axis=axis, keepdims=True)
    elif norm > 0:
        length = np.sum(mag**norm, axis=axis, keepdims=True) ** (1.0 / norm)
    else:
        raise ValueError(f"normalize: unsupported norm={norm!r}")
    length[length < np.finfo(S.dtype).tiny] = 1.0
    out = np.empty_like(S)
    out[:] = S / length
    return out


def power_to_db(
    S: np.ndarray,
    *,
    ref: float | Callable[[np.ndarray], float] = 1.0,
    amin: float = 1e-10,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """``librosa.power_to_db(S, ref=ref, amin=amin, top_db=top_db)`` for a real power array.

    Args:
        S: Power, >= 0, float32 or float64.
        ref: Reference power (0 dB), or a function of ``S`` that gives it (e.g. ``np.max``).
        amin: Floor of ``S`` and ``ref`` before the logarithm.
        top_db: Clip values more than this many dB below the maximum; None: no clipping.

    Returns:
        ``10 * log10(max(amin, S) / max(amin, ref))`` in ``S``'s dtype.
    """
    ref_value = ref(S) if callable(ref) else np.abs(ref)
    log_spec: np.ndarray = 10.0 * np.log10(np.maximum(amin, S))
    log_spec -= 10.0 * np.log10(np.maximum(amin, ref_value))
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec
