"""One signal's short-time analysis, shared by every feature set of one extract() call.

The STFT magnitude (bit-identical to librosa's), the mel and chroma filterbanks, librosa's tuning
estimate, and what is derived from them, each computed at most once per signal
(:class:`Analysis`). The sets (:mod:`emotune.features._sets`, :mod:`emotune.features._stats`)
read it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from emotune.features import _dsp

__all__ = ["Analysis"]

# Settings fixed by the code (covered by the sets' versions): librosa's defaults.
_TOP_DB = 80.0  # power_to_db clipping below the file's maximum, for MFCC and log-mel statistics
_TUNING_FMIN, _TUNING_FMAX, _TUNING_THRESHOLD = 150.0, 4000.0, 0.1  # librosa.piptrack defaults


class Analysis:
    """One signal's STFT and what is derived from it, each piece computed at most once.

    Arrays are frame-major, [shape=(t, ...)], as the FFT produces them (one frame per row): each
    filterbank is one product over the rows, and the tuning estimate reads contiguous bands. Sets
    transpose to librosa's (feature, time) layout where they return a matrix.
    """

    def __init__(self, y: np.ndarray, *, sr: int, n_fft: int, hop_length: int) -> None:
        self.y, self.sr, self.n_fft, self.hop_length = y, sr, n_fft, hop_length
        self.magnitude = _magnitude(y, n_fft=n_fft, hop_length=hop_length)  # (t, 1 + n_fft // 2)
        self._memo: dict[tuple[Any, ...], Any] = {}

    def once(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def power(self) -> np.ndarray:
        """[shape=(t, 1 + n_fft // 2)] ``|X|**2``."""
        return self.once(("power",), lambda: np.square(self.magnitude))

    def mel(self, n_mels: int) -> np.ndarray:
        """[shape=(t, n_mels)] mel power spectrogram (slaney filterbank on the power)."""
        return self.once(("mel", n_mels), lambda: self.power @ _mel_basis_t(self.sr, self.n_fft, n_mels))

    def log_mel(self, n_mels: int) -> np.ndarray:
        """[shape=(t, n_mels)] ``power_to_db(mel)`` with ref 1.0 and top_db 80, as librosa's MFCC."""
        return self.once(("log_mel", n_mels), lambda: _dsp.power_to_db(self.mel(n_mels), top_db=_TOP_DB))

    def mfcc(self, n_mfcc: int, n_mels: int) -> np.ndarray:
        """[shape=(t, n_mfcc)] orthonormal DCT-II of the log-mel, first ``n_mfcc`` coefficients."""
        import scipy.fft

        return self.once(
            ("mfcc", n_mfcc, n_mels),
            lambda: scipy.fft.dct(self.log_mel(n_mels), type=2, norm="ortho", axis=1)[:, :n_mfcc],
        )

    def chroma(self, n_chroma: int) -> np.ndarray:
        """[shape=(t, n_chroma)] ``chroma_stft(S=magnitude)``: each frame scaled to max 1."""

        def compute() -> np.ndarray:
            tuning = _estimate_tuning(self.magnitude, sr=self.sr, n_fft=self.n_fft, bins_per_octave=n_chroma)
            raw = self.magnitude @ _chroma_basis(self.sr, self.n_fft, n_chroma, tuning).T
            return _dsp.normalize(raw, norm=np.inf, axis=1)

        return self.once(("chroma", n_chroma), compute)

    @property
    def rms(self) -> np.ndarray:
        """[shape=(t,)] RMS per frame from the spectrum (``librosa.feature.rms(S=...)``).

        Used by the statistics sets only, which import librosa anyway.
        """
        import librosa

        return self.once(
            ("rms",), lambda: librosa.feature.rms(S=self.magnitude.T, frame_length=self.n_fft)[0]
        )


def _magnitude(y: np.ndarray, *, n_fft: int, hop_length: int) -> np.ndarray:
    """[shape=(t, 1 + n_fft // 2), float32] ``np.abs(librosa.stft(y, n_fft=..., hop_length=...)).T``.

    The same centred, zero-padded, Hann-windowed frames and the same float64 FFT rounded to
    complex64, so the result is bit-identical to librosa's (and the tuning estimate, a histogram
    argmax, sees the same peaks). Frames go through the FFT in blocks of ~512 KiB, which keeps the
    temporaries in cache: faster than transforming the whole signal at once.
    """
    import scipy.fft

    half = n_fft // 2
    padded = np.pad(y, (half, half))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    window = _hann(n_fft)
    out = np.empty((frames.shape[0], 1 + half), dtype=np.float32)
    block = max(1, 2**19 // (8 * n_fft))
    for start in range(0, frames.shape[0], block):
        spectrum = scipy.fft.rfft(frames[start : start + block] * window, axis=1)
        np.abs(spectrum.astype(np.complex64), out=out[start : start + block])
    return out


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    window = _dsp.hann(n_fft)  # scipy.signal.get_window("hann", n_fft), without importing scipy.signal
    window.setflags(write=False)
    return window


@functools.lru_cache(maxsize=16)
def _mel_basis_t(sr: int, n_fft: int, n_mels: int) -> Any:
    """[shape=(1 + n_fft // 2, n_mels), float32, sparse] librosa's (slaney) mel filterbank, transposed.

    Each filter spans a few bins (about 2 nonzeros per FFT bin in all), so a sparse product is
    ~4x cheaper than the dense one and, unlike BLAS, never spins threads (a multithreaded sgemm
    this small is slower than one core on a busy machine).
    """
    import scipy.sparse

    return scipy.sparse.csc_array(_dsp.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels).T)


@functools.lru_cache(maxsize=256)
def _chroma_basis(sr: int, n_fft: int, n_chroma: int, tuning: float) -> np.ndarray:
    """[shape=(n_chroma, 1 + n_fft // 2), float32] librosa's chroma filterbank at a tuning.

    The tuning estimate takes one of ``1 / 0.01 + 1`` values, so the cache stays small.
    """
    basis = _dsp.chroma_filterbank(sr=sr, n_fft=n_fft, n_chroma=n_chroma, tuning=tuning)
    basis.setflags(write=False)
    return basis


def _estimate_tuning(magnitude: np.ndarray, *, sr: int, n_fft: int, bins_per_octave: int) -> float:
    """``librosa.estimate_tuning(S=magnitude.T, sr=sr, bins_per_octave=...)``, only where it counts.

    librosa's piptrack evaluates gradients and parabolic shifts over the whole spectrogram, then keeps
    the local maxima between 150 and 4000 Hz that exceed a tenth of their frame's maximum. The same
    quantities are computed here for those peaks only, in the same floating-point types, so the
    histogram argmax is the same (tested against librosa on every real file): about a third of the
    bins are compared and a few thousand values interpolated, without the numba stencils.

    Args:
        magnitude: [shape=(t, 1 + n_fft // 2)] ``|X|``, C-contiguous.

    Returns:
        Tuning deviation in fractions of a bin, in [-0.5, 0.5).
    """
    lo, hi = _tuning_band(sr, n_fft)
    if lo >= hi:
        return 0.0
    # Local maxima of S * (S > 0.1 * frame max) along frequency. Magnitudes are >= 0, so for a bin
    # above the floor that is the same as a local maximum of S itself.
    floor = _TUNING_THRESHOLD * magnitude.max(axis=1, keepdims=True)
    band = magnitude[:, lo - 1 : hi + 1]  # one neighbour each side: lo >= 1 and hi < n_bins
    centre = band[:, 1:-1]
    peaks = np.flatnonzero((centre > floor) & (centre > band[:, :-2]) & (centre >= band[:, 2:]))
    if peaks.size == 0:
        return 0.0
    frame, col = np.divmod(peaks, hi - lo)
    k = col + lo
    flat = frame * magnitude.shape[1] + k
    values = magnitude.ravel()
    below, at, above = values[flat - 1], values[flat], values[flat + 1]
    # librosa's parabolic-interpolation stencil: numba evaluates it in float64, stores float32.
    a = (above + below).astype(np.float64) - 2 * at.astype(np.float64)
    b = (above - below).astype(np.float64) / 2
    shift = np.zeros_like(a)
    np.divide(-b, a, out=shift, where=np.abs(b) < np.abs(a))
    shift = shift.astype(np.float32)
    pitch = ((k + shift) * float(sr) / n_fft).astype(np.float32)
    mag = at + 0.5 * ((above - below) / 2.0) * shift  # S + dskew, dskew = 0.5 * gradient * shift
    return _pitch_tuning(pitch[mag >= np.median(mag)], bins_per_octave=bins_per_octave)


@functools.lru_cache(maxsize=16)
def _tuning_band(sr: int, n_fft: int) -> tuple[int, int]:
    """FFT bins ``[lo, hi)`` that piptrack considers: 150 Hz <= f < min(4000 Hz, sr / 2)."""
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    band = np.flatnonzero((freqs >= _TUNING_FMIN) & (freqs < min(_TUNING_FMAX, sr / 2)))
    return (int(band[0]), int(band[-1]) + 1) if band.size else (0, 0)


def _pitch_tuning(frequencies: np.ndarray, *, bins_per_octave: int, resolution: float = 0.01) -> float:
    """``librosa.pitch_tuning``: the most common deviation from equal temperament, in bins.

    The same residuals and bin edges; the histogram is counted with one ``searchsorted`` instead of
    ``np.histogram``'s sort (bins ``[e_i, e_i+1)``, and residuals never reach the last edge 0.5).
    """
    frequencies = frequencies[frequencies > 0]
    if frequencies.size == 0:
        return 0.0
    residual = np.mod(bins_per_octave * np.log2(frequencies / (440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    # float32 -> float64 is exact; with equal dtypes searchsorted takes its fast typed path.
    bins = np.searchsorted(edges, residual.astype(np.float64), side="right") - 1
    counts = np.bincount(bins, minlength=edges.size - 1)
    return float(edges[np.argmax(counts)])
