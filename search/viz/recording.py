"""One recording as pictures: waveform, spectrograms, the loudest frame's spectrum, envelope, MFCCs.

Everything is computed from what the feature cache computes: the file is decoded by
:func:`emotune.features.read_audio` at the feature sets' sample rate, and the spectrogram is the
cache's own short-time Fourier transform (Hann window, ``n_fft=2048``, ``hop_length=512``, centred),
with the MFCCs of ``mfcc_seq`` taken from it. So what is drawn is what the models see.

Only the first :data:`MAX_SECONDS` seconds of a file are read and drawn (said on stderr and in the
page's title when the file is longer): a one-hour recording is drawn in the memory and time of a
minute, not tens of gigabytes. The file is read by the one scanning rule of
:mod:`emotune.features._corpora` (regular files only).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emotune.search.viz._common import figure, out_dir, png_bytes, write_atomic

# Each figure's size in pixels (width, height); the combined page holds all six panels.
PANEL_SIZE = (1000, 400)
PAGE_SIZE = (1400, 1500)
FIGURES = (
    "waveform",
    "spectrogram_linear",
    "spectrogram_db",
    "spectrum_loudest_frame",
    "spectral_envelope",
    "mfcc",
)
PAGE = "recording"
# The cepstral lifter keeps quefrencies below this fraction of the pitch period (see spectral_envelope).
LIFTER_FRACTION = 0.6
MIN_LIFTER_SECONDS = 0.0012
FORMANT_MAX_HZ = 5000.0
MAX_FORMANTS = 5
# Seconds of a recording that are read and drawn; a longer file is drawn from its beginning.
MAX_SECONDS = 30.0


@dataclass
class Recording:
    """A decoded recording and the cache's analysis of it.

    Attributes:
        path: The file.
        y: [shape=(n,)] mono samples at ``sr``.
        sr: Sample rate (the feature sets').
        n_fft, hop_length: STFT settings (the feature sets').
        magnitude: [shape=(1 + n_fft // 2, t)] ``|STFT|`` as the feature cache computes it.
        mfcc: [shape=(n_mfcc, t)] the MFCCs ``mfcc_seq`` is cut from (before padding to its length).
        loudest: Index of the frame with the most energy.
        envelope_db: [shape=(1 + n_fft // 2,)] the loudest frame's cepstrally smoothed log spectrum.
        formants: Frequencies (Hz) of the envelope's peaks below ``FORMANT_MAX_HZ``.
        duration: The whole file's length in seconds (``y`` holds at most :data:`MAX_SECONDS`).
    """

    path: str
    y: np.ndarray
    sr: int
    n_fft: int
    hop_length: int
    magnitude: np.ndarray
    mfcc: np.ndarray
    loudest: int
    envelope_db: np.ndarray
    formants: list[float]
    duration: float = 0.0

    @property
    def truncated(self) -> bool:
        """Whether only the beginning of the file was read (it is longer than :data:`MAX_SECONDS`)."""
        return self.duration > len(self.y) / self.sr + 1.0 / self.sr

    @property
    def frequencies(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_fft, d=1.0 / self.sr)

    @property
    def frame_db(self) -> np.ndarray:
        """[shape=(1 + n_fft // 2,)] the loudest frame's log spectrum (dB re 1)."""
        return 20.0 * np.log10(np.maximum(self.magnitude[:, self.loudest], 1e-10))


def analyse(path: str | os.PathLike[str]) -> Recording:
    """Decode a file's first :data:`MAX_SECONDS` seconds and analyse them with the feature cache's own
    STFT and MFCC code.

    Raises:
        AudioError: the file is no usable audio (one line).
    """
    from emotune.features._analysis import Analysis
    from emotune.features._audio import read_head
    from emotune.features._ray import guard_numba_cache
    from emotune.features._sets import feature_params

    guard_numba_cache()
    p = feature_params("mfcc_seq")
    y, duration = read_head(path, sr=p["sr"], seconds=MAX_SECONDS)
    an = Analysis(
        np.ascontiguousarray(y, dtype=np.float32), sr=p["sr"], n_fft=p["n_fft"], hop_length=p["hop_length"]
    )
    magnitude = an.magnitude.T.astype(np.float64)  # (freq, t), librosa's layout
    loudest = int(np.argmax((magnitude**2).sum(axis=0)))
    frame_db = 20.0 * np.log10(np.maximum(magnitude[:, loudest], 1e-10))
    envelope = spectral_envelope(frame_db, sr=p["sr"])
    peaks = formant_peaks(envelope, np.fft.rfftfreq(p["n_fft"], d=1.0 / p["sr"]))
    return Recording(
        path=str(path),
        y=np.asarray(y),
        sr=p["sr"],
        n_fft=p["n_fft"],
        hop_length=p["hop_length"],
        magnitude=magnitude,
        mfcc=an.mfcc(p["n_mfcc"], p["n_mels"]).T,
        loudest=loudest,
        envelope_db=envelope,
        formants=peaks,
        duration=duration,
    )


def spectral_envelope(frame_db: np.ndarray, *, sr: int, lifter_seconds: float | None = None) -> np.ndarray:
    """Smooth a log spectrum by cepstral liftering.

    The real cepstrum is the inverse FFT of the log magnitude; the glottal pulse's harmonics sit at
    the pitch period's quefrency and its multiples, the vocal tract's resonances below it. Keeping
    the quefrencies below a cut-off and transforming back gives the envelope. By default the cut-off
    follows the voice: ``LIFTER_FRACTION`` of the pitch period found as the cepstral peak between
    1/400 and 1/60 s (never below ``MIN_LIFTER_SECONDS``), so close formants of a low voice stay apart
    and the harmonics of a high voice are still smoothed away.

    Args:
        frame_db: [shape=(1 + n_fft // 2,)] a frame's log spectrum in dB.
        sr: Sample rate.
        lifter_seconds: A fixed quefrency cut-off in seconds (None: from the pitch, as above).

    Returns:
        [shape=(1 + n_fft // 2,)] the envelope in dB.
    """
    import scipy.fft

    log_mag = np.asarray(frame_db, dtype=np.float64)
    cepstrum = scipy.fft.irfft(log_mag)  # real and even: the log spectrum is real and symmetric
    if lifter_seconds is None:
        lo, hi = int(sr / 400), min(int(sr / 60), cepstrum.size // 2)
        period = lo + int(np.argmax(cepstrum[lo:hi])) if hi > lo else int(MIN_LIFTER_SECONDS * sr)
        cut = max(int(MIN_LIFTER_SECONDS * sr), int(LIFTER_FRACTION * period))
    else:
        cut = max(1, int(round(lifter_seconds * sr)))
    window = np.zeros_like(cepstrum)
    window[:cut] = 1.0
    window[-cut + 1 :] = 1.0  # the mirrored half
    return np.asarray(scipy.fft.rfft(cepstrum * window).real[: log_mag.size])


def formant_peaks(
    envelope_db: np.ndarray,
    frequencies: np.ndarray,
    *,
    fmin: float = 150.0,
    fmax: float = FORMANT_MAX_HZ,
    n: int = MAX_FORMANTS,
    prominence_db: float = 1.0,
) -> list[float]:
    """The envelope's local maxima between ``fmin`` and ``fmax`` Hz: the formants, lowest first.

    At most ``n`` peaks, the most prominent ones (scipy's peak prominence, at least ``prominence_db``).
    """
    from scipy.signal import find_peaks

    band = (frequencies >= fmin) & (frequencies <= fmax)
    idx = np.flatnonzero(band)
    if idx.size < 3:
        return []
    found, props = find_peaks(envelope_db[idx], prominence=prominence_db)
    order = np.argsort(props["prominences"])[::-1][:n]
    return sorted(float(frequencies[idx[found[i]]]) for i in order)


# --- drawing --------------------------------------------------------------------------------------


def _waveform(ax: Any, r: Recording) -> None:
    import librosa.display

    librosa.display.waveshow(r.y, sr=r.sr, ax=ax, color="tab:blue")
    ax.set(title="waveform", xlabel="time (s)", ylabel="amplitude")


def _spectrogram_linear(ax: Any, r: Recording) -> None:
    import librosa.display

    img = librosa.display.specshow(
        r.magnitude, sr=r.sr, hop_length=r.hop_length, n_fft=r.n_fft, x_axis="time", y_axis="linear", ax=ax
    )
    ax.figure.colorbar(img, ax=ax, label="|STFT|")
    ax.set(title="spectrogram: linear frequency, linear amplitude")


def _spectrogram_db(ax: Any, r: Recording) -> None:
    import librosa
    import librosa.display

    db = librosa.amplitude_to_db(r.magnitude, ref=np.max)
    img = librosa.display.specshow(
        db, sr=r.sr, hop_length=r.hop_length, n_fft=r.n_fft, x_axis="time", y_axis="log", ax=ax
    )
    ax.figure.colorbar(img, ax=ax, format="%+2.0f dB")
    ax.set(title="spectrogram: log frequency, dB")


def _frame_spectrum(ax: Any, r: Recording) -> None:
    t = r.loudest * r.hop_length / r.sr
    f = r.frequencies
    ax.plot(f[1:], r.frame_db[1:], lw=0.8, color="tab:blue")
    ax.set_xscale("log")
    ax.set(
        title=f"log spectrum of the loudest frame (t = {t:.2f} s)",
        xlabel="frequency (Hz, log scale)",
        ylabel="level (dB)",
        xlim=(20, r.sr / 2),
        ylim=_level_range(r.frame_db[f >= 20]),
    )
    ax.grid(alpha=0.3)


def _envelope(ax: Any, r: Recording) -> None:
    f = r.frequencies
    ax.plot(f, r.frame_db, lw=0.6, color="0.6", label="log spectrum")
    ax.plot(f, r.envelope_db, lw=1.6, color="tab:blue", label="envelope (cepstral liftering)")
    if r.formants:
        at = np.searchsorted(f, r.formants)
        ax.plot(r.formants, r.envelope_db[at], "o", color="red", label="formants")
        for hz, level in zip(r.formants, r.envelope_db[at], strict=True):
            ax.annotate(f"{hz:.0f} Hz", (hz, level), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set(
        title="spectral envelope of the loudest frame, formant peaks in red",
        xlabel="frequency (Hz)",
        ylabel="level (dB)",
        xlim=(0, FORMANT_MAX_HZ * 1.2),
        ylim=_level_range(r.frame_db[f <= FORMANT_MAX_HZ * 1.2]),
    )
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)


def _level_range(db: np.ndarray) -> tuple[float, float]:
    """dB limits that show the frame's spectrum: its top, down to 80 dB below (or its floor)."""
    top = float(np.max(db)) if db.size else 0.0
    return max(float(np.min(db)), top - 80.0) - 3.0, top + 8.0


def _mfcc(ax: Any, r: Recording) -> None:
    import librosa.display

    # c0 (loudness) is an order of magnitude larger than the rest: colour by the others' range.
    v = float(np.percentile(np.abs(r.mfcc[1:]), 99)) if r.mfcc.shape[0] > 1 else None
    img = librosa.display.specshow(
        r.mfcc,
        sr=r.sr,
        hop_length=r.hop_length,
        x_axis="time",
        ax=ax,
        cmap="coolwarm",
        vmin=-v if v else None,
        vmax=v,
    )
    ax.figure.colorbar(img, ax=ax)
    edges = np.asarray(img.get_coordinates())[:, 0, 1]  # row edges of the mesh specshow drew
    ticks = np.arange(0, r.mfcc.shape[0], 4)
    ax.set_yticks((edges[ticks] + edges[ticks + 1]) / 2, [str(t) for t in ticks])
    ax.set(title=f"MFCC ({r.mfcc.shape[0]} coefficients, as mfcc_seq)", ylabel="coefficient")


_DRAW: dict[str, Callable[[Any, Recording], None]] = {
    "waveform": _waveform,
    "spectrogram_linear": _spectrogram_linear,
    "spectrogram_db": _spectrogram_db,
    "spectrum_loudest_frame": _frame_spectrum,
    "spectral_envelope": _envelope,
    "mfcc": _mfcc,
}


def figures(r: Recording) -> dict[str, bytes]:
    """Every figure of :data:`FIGURES` (``PANEL_SIZE`` each) and the combined page (``PAGE_SIZE``) as PNG bytes."""
    out: dict[str, bytes] = {}
    for name in FIGURES:
        fig = figure(*PANEL_SIZE)
        _DRAW[name](fig.add_subplot(), r)
        out[name] = png_bytes(fig)
    page = figure(*PAGE_SIZE)
    axes = page.subplots(3, 2)
    for ax, name in zip(axes.flat, FIGURES, strict=True):
        _DRAW[name](ax, r)
    title = Path(r.path).name
    if r.truncated:
        title += f" (first {len(r.y) / r.sr:.0f} s of {r.duration:.1f} s)"
    page.suptitle(title)
    out[PAGE] = png_bytes(page)
    return out


def plot_recording(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, Path]:
    """Draw one recording's figures into the folder ``out``; returns name -> PNG path.

    Each PNG is written atomically. Names: :data:`FIGURES` and :data:`PAGE`, with ``.png``.

    Raises:
        AudioError: ``path`` is no usable audio.
        VizError: ``out`` cannot be used as a folder.

    Example:
        >>> plot_recording("Actor_01/03-01-05-01-01-01-01.wav", "figures")  # doctest: +SKIP
    """
    r = analyse(path)  # a file that is no audio fails before any folder is made
    if r.truncated:
        print(
            f"emotune: {os.fsdecode(path)} is {r.duration:.1f} s long: drawing its first {MAX_SECONDS:.0f} s",
            file=sys.stderr,
        )
    folder = out_dir(out)
    return {name: write_atomic(folder / f"{name}.png", data) for name, data in figures(r).items()}
