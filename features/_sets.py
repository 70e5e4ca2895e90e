"""Feature sets: every set a file needs from one decode and one short-time Fourier transform.

Six sets, each described by a JSON-clean parameter dict (:func:`feature_params`) that holds every
setting that changes its numbers, plus ``"set"`` and a code ``"version"`` (the cache keys on it):

``classic`` [shape=(n_mfcc + n_chroma + n_mels,) = (180,)]
    The 180-means recipe's vector: time means of 40 MFCC, 12 chroma and 128 mel bands, i.e. what
    ``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40)``, ``librosa.feature.chroma_stft(S=np.abs(
    librosa.stft(y)), sr=sr)`` and ``librosa.feature.melspectrogram(y=y, sr=sr)`` give, averaged
    over frames, in that order.
``classic_stats`` [shape=(D,)]
    Per-file statistics with named columns (:func:`feature_columns`); see :func:`_stats_columns`
    for the blocks. D = 479 at the defaults.
``functionals`` [shape=(D,)]
    ``classic_stats`` followed by more functionals of the same analysis (:func:`_functional_columns`):
    MFCC percentiles, skewness and kurtosis, second deltas, spectral shape (flatness, roll-off,
    bandwidth, flux, slope), f0 and level contours in semitones and dB, a speaking-rate proxy, MFCC
    over voiced frames, alpha ratio and Hammarberg index. D = 886 at the defaults; same parameters
    as ``classic_stats``. The classical spaces' default: on speakers a model has not heard it is
    the stronger set (README, "Accuracy on new speakers").
``mfcc_seq`` [shape=(n_mfcc, frames) = (20, 236)]
    The MFCC-sequence recipe's input, padded or truncated at the end to a fixed number of frames.
``melspec`` [shape=size = (128, 128)]
    Log-mel spectrogram image (dB re the file's maximum), resized with a deterministic triangle
    filter; ``size=(224, 224)`` gives VGG16's input size.
``vgg16_bottleneck`` [shape=(512 * 7 * 7,) = (25088,)]
    The frozen VGG16 bottleneck: the ``melspec`` image (``size=(224, 224)`` by default), min-max
    scaled and ImageNet-normalised as a grey picture, through VGG16's convolutional part, 7x7 average
    pool, flattened (:mod:`emotune.features._vgg`). The weights come from a torchvision ``vgg16``
    state_dict file the user supplies (``$EMOTUNE_VGG16_WEIGHTS`` or ``--vgg16-weights``); the params
    hold its ``weights_sha256`` (required, see :func:`default_params`), not its path, and the file is
    checked against it wherever it is used. :data:`AUDIO_SETS` are the sets that need nothing else.

Shared analysis (one per :func:`extract` call): Hann window, ``n_fft=2048``, ``hop_length=512``,
centred frames with zero padding (librosa's defaults, as the seeds); magnitude ``|X|`` and power
``|X|**2``; one slaney mel filterbank (0 Hz to Nyquist) applied to the power; MFCC = orthonormal
DCT-II of ``power_to_db`` (ref 1, top_db 80) of that mel; chroma from the magnitude with librosa's
tuning estimate computed on the same magnitude. Filterbanks are cached per setting.

Imports: ``classic``, ``mfcc_seq`` and ``melspec`` need numpy, ``scipy.fft`` and ``scipy.sparse``
only (filterbanks, window and dB conversion from :mod:`emotune.features._dsp`, bit-identical to
librosa's), so a fresh worker does not pay librosa's 1.2-1.9 s import; ``classic_stats`` and
``functionals`` (delta, contrast, tonnetz, spectral shape, pYIN) import librosa when they run; ``vgg16_bottleneck`` imports torch when it runs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from emotune.features import _dsp, _vgg
from emotune.features._audio import read_audio
from emotune.features._errors import FeatureError

__all__ = [
    "AUDIO_SETS",
    "FEATURE_SETS",
    "PAD_MODES",
    "default_params",
    "extract",
    "extract_file",
    "feature_columns",
    "feature_params",
    "feature_shape",
]

FEATURE_SETS: tuple[str, ...] = (
    "classic",
    "classic_stats",
    "functionals",
    "mfcc_seq",
    "melspec",
    "vgg16_bottleneck",
)
# Sets computed from the audio alone (what ``build(sets="all")`` means); vgg16_bottleneck needs weights.
AUDIO_SETS: tuple[str, ...] = ("classic", "classic_stats", "functionals", "mfcc_seq", "melspec")
# Sets that hold classic_stats' columns (and its parameters), and import librosa when they run.
_STATS_SETS: tuple[str, ...] = ("classic_stats", "functionals")
# Sets whose last step is a network over a batch of files' inputs (see extract_inputs / finish_batch).
BATCHED_SETS: tuple[str, ...] = ("vgg16_bottleneck",)
PAD_MODES: tuple[str, ...] = ("median", "constant", "edge", "wrap")
F0_METHODS: tuple[str, ...] = ("yin", "pyin")

# Bump a set's version whenever a code change changes its numbers: the cache keys on it.
_VERSIONS = {
    "classic": 1,
    "classic_stats": 1,
    "functionals": 1,
    "mfcc_seq": 1,
    "melspec": 1,
    "vgg16_bottleneck": 1,
}

# Parameters every set shares; one extract() call needs them equal across its sets.
_STFT_DEFAULTS: dict[str, Any] = {"sr": 22050, "n_fft": 2048, "hop_length": 512}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "classic": {"n_mfcc": 40, "n_chroma": 12, "n_mels": 128},
    "classic_stats": {
        "n_mfcc": 40,
        "n_chroma": 12,
        "n_mels": 128,
        "delta_width": 9,
        "contrast_bands": 6,
        "contrast_fmin": 200.0,
        "f0": "yin",
        "f0_fmin": 60.0,
        "f0_fmax": 600.0,
        "f0_frame_length": 1024,
        "f0_trough_threshold": 0.1,
        "f0_voicing_threshold": 0.3,
        "f0_gate_db": 40.0,
    },
    # "median": pad with each coefficient's median frame, as the MFCC-sequence recipe did; in the
    # MFCC domain the median frame is a typical frame of the file, whereas zeros are not silence
    # (c0 = 0 is a specific loudness), "edge" repeats the trailing frame (often silence) and
    # "wrap" repeats content, which a sequence model could mistake for more speech.
    "mfcc_seq": {"n_mfcc": 20, "n_mels": 128, "frames": 236, "pad": "median"},
    "melspec": {"n_mels": 128, "top_db": 80.0, "size": [128, 128]},
    # VGG16's 224x224 input; weights_sha256 has no default (see default_params).
    "vgg16_bottleneck": {"n_mels": 128, "top_db": 80.0, "size": [224, 224], "weights_sha256": None},
}

# classic_stats' columns plus more functionals of the same analysis: the same parameters.
_DEFAULTS["functionals"] = dict(_DEFAULTS["classic_stats"])

# Settings fixed by the code (covered by the version): librosa's defaults, as the seeds used them.
_TOP_DB = 80.0  # power_to_db clipping below the file's maximum, for MFCC and log-mel statistics
_TUNING_FMIN, _TUNING_FMAX, _TUNING_THRESHOLD = 150.0, 4000.0, 0.1  # librosa.piptrack defaults
_CHROMA_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_TONNETZ_NAMES = ("fifth_x", "fifth_y", "minor_x", "minor_y", "major_x", "major_y")
_F0_STATS = ("f0_mean", "f0_std", "f0_min", "f0_max", "f0_range", "f0_median", "voiced_fraction")


# --------------------------------------------------------------------------------------------------
# Parameters


def feature_params(name: str, **overrides: Any) -> dict[str, Any]:
    """Every parameter that changes a feature set's numbers, as a JSON-clean dict.

    Args:
        name: One of :data:`FEATURE_SETS`.
        **overrides: Parameters to change from the defaults. ``set`` and ``version`` may be given
            (e.g. when re-validating a stored dict) and must then match ``name`` and this code.

    Returns:
        ``{"set": name, "version": int, "sr": ..., "n_fft": ..., "hop_length": ..., ...}``.

    Raises:
        FeatureError: unknown set, unknown parameter, or a bad value (the message names it).

    Example:
        >>> feature_params("mfcc_seq", frames=200)["frames"]
        200
        >>> feature_params("melspec", size=(224, 224))["size"]
        [224, 224]
    """
    if name not in FEATURE_SETS:
        raise FeatureError(f"unknown feature set {name!r} (valid: {', '.join(FEATURE_SETS)})")
    overrides = dict(overrides)
    given = overrides.pop("set", name)
    if given != name:
        raise FeatureError(f"{name}: parameter set={given!r} does not match the set name")
    version = overrides.pop("version", _VERSIONS[name])
    if version != _VERSIONS[name]:
        raise FeatureError(
            f"{name}: version={version!r} was made by another emotune; this one computes version "
            f"{_VERSIONS[name]} (rebuild the features)"
        )
    defaults = {**_STFT_DEFAULTS, **_DEFAULTS[name]}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise FeatureError(f"{name}: unknown parameter {unknown[0]!r} (valid: {', '.join(defaults)})")
    params: dict[str, Any] = {"set": name, "version": _VERSIONS[name]}
    for key, default in defaults.items():
        value = overrides.get(key, default)
        params[key] = _VALIDATORS[key](name, key, value)
    _check_together(params)
    return params


def default_params(
    name: str, *, vgg16_weights: str | os.PathLike[str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """:func:`feature_params`, with what a set needs from outside the audio filled in.

    For ``vgg16_bottleneck``, ``weights_sha256`` is the sha256 of the weights file (``vgg16_weights``,
    else ``$EMOTUNE_VGG16_WEIGHTS``) unless given; other sets take no extra input.

    Args:
        name: One of :data:`FEATURE_SETS`.
        vgg16_weights: A torchvision ``vgg16`` state_dict file.
        **overrides: Parameters to change from the defaults.

    Raises:
        FeatureError: as :func:`feature_params`, or no weights file (one line naming
            ``EMOTUNE_VGG16_WEIGHTS`` or the path given).

    Example:
        >>> len(default_params("vgg16_bottleneck", vgg16_weights="vgg16.pth")["weights_sha256"])  # doctest: +SKIP
        64
    """
    if name == "vgg16_bottleneck" and overrides.get("weights_sha256") is None:
        overrides["weights_sha256"] = _vgg.weights_sha256(vgg16_weights)
    return feature_params(name, **overrides)


def _int_at_least(lo: int) -> Callable[[str, str, Any], int]:
    def check(name: str, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise FeatureError(f"{name}: {key}={value!r} must be an integer >= {lo}")
        return int(value)

    return check


def _positive_float(name: str, key: str, value: Any) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise FeatureError(f"{name}: {key}={value!r} must be a positive number")
    return float(value)


def _choice(choices: tuple[str, ...]) -> Callable[[str, str, Any], str]:
    def check(name: str, key: str, value: Any) -> str:
        if value not in choices:
            raise FeatureError(f"{name}: {key}={value!r} must be one of {', '.join(choices)}")
        return str(value)

    return check


def _image_size(name: str, key: str, value: Any) -> list[int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    if not ok or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in value):
        raise FeatureError(f"{name}: {key}={value!r} must be (height, width), two integers >= 1")
    return [int(value[0]), int(value[1])]


def _sha256(name: str, key: str, value: Any) -> str:
    if value is None:
        raise FeatureError(
            f"{name}: {key} is required: the sha256 of your torchvision vgg16 state_dict file (set "
            f"{_vgg.VGG16_WEIGHTS_ENV} or --vgg16-weights to it; emotune downloads nothing)"
        )
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise FeatureError(f"{name}: {key}={value!r} must be a sha256, 64 lowercase hex digits")
    return value


def _odd_at_least_3(name: str, key: str, value: Any) -> int:
    value = _int_at_least(3)(name, key, value)
    if value % 2 == 0:
        raise FeatureError(f"{name}: {key}={value!r} must be an odd integer >= 3")
    return value


_VALIDATORS: dict[str, Callable[[str, str, Any], Any]] = {
    "sr": _int_at_least(1000),
    "n_fft": _int_at_least(16),
    "hop_length": _int_at_least(1),
    "n_mfcc": _int_at_least(1),
    "n_chroma": _int_at_least(1),
    "n_mels": _int_at_least(1),
    "delta_width": _odd_at_least_3,
    "contrast_bands": _int_at_least(1),
    "contrast_fmin": _positive_float,
    "f0": _choice(F0_METHODS),
    "f0_fmin": _positive_float,
    "f0_fmax": _positive_float,
    "f0_frame_length": _int_at_least(16),
    "f0_trough_threshold": _positive_float,
    "f0_voicing_threshold": _positive_float,
    "f0_gate_db": _positive_float,
    "frames": _int_at_least(1),
    "pad": _choice(PAD_MODES),
    "top_db": _positive_float,
    "size": _image_size,
    "weights_sha256": _sha256,
}


def _check_together(p: dict[str, Any]) -> None:
    """Rules that involve more than one parameter."""
    name, nyquist = p["set"], p["sr"] / 2
    if "n_mfcc" in p and p["n_mfcc"] > p["n_mels"]:
        raise FeatureError(f"{name}: n_mfcc={p['n_mfcc']} must not exceed n_mels={p['n_mels']}")
    if name not in _STATS_SETS:
        return
    top_band = p["contrast_fmin"] * 2.0 ** (p["contrast_bands"] - 1)
    if top_band >= nyquist:
        raise FeatureError(
            f"{name}: contrast_bands={p['contrast_bands']} with contrast_fmin={p['contrast_fmin']} "
            f"puts a band edge at {top_band:g} Hz, at or above the Nyquist frequency {nyquist:g} Hz "
            f"of sr={p['sr']}"
        )
    if p["f0_fmax"] > nyquist:
        raise FeatureError(f"{name}: f0_fmax={p['f0_fmax']} exceeds the Nyquist frequency {nyquist:g} Hz")
    if p["f0_fmin"] >= p["f0_fmax"]:
        raise FeatureError(f"{name}: f0_fmin={p['f0_fmin']} must be below f0_fmax={p['f0_fmax']}")
    if p["sr"] / p["f0_fmin"] >= p["f0_frame_length"] - 1:
        raise FeatureError(
            f"{name}: f0_fmin={p['f0_fmin']} is too low for f0_frame_length={p['f0_frame_length']} at "
            f"sr={p['sr']} (the longest period must fit a frame: f0_fmin > "
            f"{p['sr'] / (p['f0_frame_length'] - 1):.1f})"
        )


def _validated(params: Any) -> dict[str, Any]:
    """Re-check a params dict (e.g. one loaded from JSON) against this code."""
    if not isinstance(params, Mapping) or "set" not in params:
        raise FeatureError(f"feature params must be a dict from feature_params(), got {params!r}")
    rest = {k: v for k, v in params.items() if k != "set"}
    return feature_params(params["set"], **rest)


def _as_params(name_or_params: str | Mapping[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    if isinstance(name_or_params, str):
        return feature_params(name_or_params, **overrides)
    return _validated({**name_or_params, **overrides})


def feature_shape(name_or_params: str | Mapping[str, Any], **overrides: Any) -> tuple[int, ...]:
    """The shape of one file's array for a set.

    Args:
        name_or_params: A set name (defaults plus ``overrides``) or a dict from :func:`feature_params`.
        **overrides: Parameters to change.

    Returns:
        ``(n_mfcc + n_chroma + n_mels,)``, ``(len(feature_columns(...)),)``, ``(n_mfcc, frames)``,
        ``(height, width)`` or ``(25088,)``.
    """
    p = _as_params(name_or_params, overrides)
    if p["set"] == "vgg16_bottleneck":
        return (_vgg.BOTTLENECK_DIM,)
    if p["set"] == "classic":
        return (p["n_mfcc"] + p["n_chroma"] + p["n_mels"],)
    if p["set"] in _STATS_SETS:
        return (len(feature_columns(p)),)
    if p["set"] == "mfcc_seq":
        return (p["n_mfcc"], p["frames"])
    return (p["size"][0], p["size"][1])


def feature_columns(name_or_params: str | Mapping[str, Any], **overrides: Any) -> list[str]:
    """Column names of a vector set (``classic``, ``classic_stats``, ``functionals``, ``vgg16_bottleneck``), in order.

    Args:
        name_or_params: A set name (defaults plus ``overrides``) or a dict from :func:`feature_params`.
        **overrides: Parameters to change.

    Returns:
        One name per value, e.g. ``["mfcc_mean_0", ..., "chroma_mean_C", ..., "mel_mean_127"]``;
        ``vgg16_{channel}_{row}_{col}`` of the pooled 512 x 7 x 7 map for ``vgg16_bottleneck``.

    Raises:
        FeatureError: a 2-D set (``mfcc_seq``, ``melspec``) or bad params.
    """
    p = _as_params(name_or_params, overrides)
    if p["set"] == "classic":
        return (
            [f"mfcc_mean_{i}" for i in range(p["n_mfcc"])]
            + [f"chroma_mean_{c}" for c in _chroma_names(p["n_chroma"])]
            + [f"mel_mean_{i}" for i in range(p["n_mels"])]
        )
    if p["set"] == "classic_stats":
        return _stats_columns(p)
    if p["set"] == "functionals":
        return _stats_columns(p) + _functional_columns(p)
    if p["set"] == "vgg16_bottleneck":
        return [f"vgg16_{c}_{i}_{j}" for c in range(512) for i in range(7) for j in range(7)]
    raise FeatureError(f"{p['set']}: a 2-D feature set has no column names (shape {feature_shape(p)})")


def _chroma_names(n_chroma: int) -> list[str]:
    return list(_CHROMA_NAMES) if n_chroma == 12 else [str(i) for i in range(n_chroma)]


def _stats_columns(p: Mapping[str, Any]) -> list[str]:
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
        ("chroma", _chroma_names(p["n_chroma"])),
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


def _functional_columns(p: Mapping[str, Any]) -> list[str]:
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


# --------------------------------------------------------------------------------------------------
# Extraction


def extract(
    y: np.ndarray,
    sr: int,
    params: Sequence[Mapping[str, Any]],
    *,
    vgg16_weights: str | os.PathLike[str] | None = None,
) -> list[np.ndarray]:
    """Compute feature sets from one signal with a single STFT shared by all of them.

    Thread-safe. Its matrix products are small, so in the main thread it runs BLAS on one thread
    (restored on return); from other threads, where processes share cores, set one BLAS thread per
    process (``OMP_NUM_THREADS=1``, as Ray does for its one-CPU tasks). ``vgg16_bottleneck`` runs
    VGG16 on this one image (torch's thread setting as it is); the feature build batches files instead.

    Args:
        y: [shape=(n,)] mono audio, ``n >= 1``, finite (as :func:`read_audio` returns it).
        sr: Sample rate of ``y``; must equal every params' ``sr``.
        params: Dicts from :func:`feature_params`, one per wanted set. All must agree on
            ``sr``, ``n_fft`` and ``hop_length``.
        vgg16_weights: The weights file of ``vgg16_bottleneck`` (None: ``$EMOTUNE_VGG16_WEIGHTS``);
            its sha256 must be the params' ``weights_sha256``.

    Returns:
        One finite float32 array per params dict, in order; shapes as :func:`feature_shape`.

    Raises:
        FeatureError: bad or disagreeing params, a signal that is empty, not 1-D or not finite, or a
            missing or other VGG16 weights file.

    Example:
        >>> classic, image = extract(y, 22050, [feature_params("classic"),
        ...                                     feature_params("melspec")])  # doctest: +SKIP
    """
    plist = _params_list(params)
    arrays = extract_inputs(y, sr, plist)
    for i, p in enumerate(plist):
        if p["set"] in BATCHED_SETS:
            arrays[i] = finish_batch(arrays[i][None], p, vgg16_weights=vgg16_weights)[0]
    return arrays


def extract_inputs(y: np.ndarray, sr: int, params: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
    """:func:`extract` up to the networks: a :data:`BATCHED_SETS` entry is its network's input.

    That is the ``melspec`` image [shape=size] of a ``vgg16_bottleneck`` params dict; stack the
    images of several files and give them to :func:`finish_batch` (one forward pass for many files).
    Other entries are final. Arguments and errors as :func:`extract`.
    """
    plist = _params_list(params)
    first = plist[0]
    for p in plist:
        for key in _STFT_DEFAULTS:
            if p[key] != first[key]:
                raise FeatureError(
                    f"{p['set']}: {key}={p[key]} differs from {first['set']}'s {key}={first[key]}; "
                    "one extract() call shares one STFT, so sr, n_fft and hop_length must agree"
                )
    if sr != first["sr"]:
        raise FeatureError(
            f"{first['set']}: the audio is at sr={sr} but the params ask for sr={first['sr']} "
            "(read it with read_audio(path, sr=...))"
        )
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise FeatureError(f"audio must be a non-empty 1-D array, got shape {y.shape}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.isfinite(y).all():
        raise FeatureError("audio holds NaN or inf samples")
    with _one_blas_thread(heavy=any(p["set"] in _STATS_SETS for p in plist)):
        analysis = _Analysis(y, sr=first["sr"], n_fft=first["n_fft"], hop_length=first["hop_length"])
        return [_COMPUTE[p["set"]](analysis, p) for p in plist]


def finish_batch(
    inputs: np.ndarray,
    params: Mapping[str, Any],
    *,
    vgg16_weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    n_threads: int | None = None,
) -> np.ndarray:
    """A :data:`BATCHED_SETS` set's arrays of several files from their :func:`extract_inputs` entries.

    Args:
        inputs: [shape=(n, *input shape)] stacked entries of ``n`` files (``vgg16_bottleneck``:
            [shape=(n, height, width)] log-mel images).
        params: The set's dict from :func:`feature_params`.
        vgg16_weights: The weights file (None: ``$EMOTUNE_VGG16_WEIGHTS``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        n_threads: torch threads for the call (None: torch's setting as it is).

    Returns:
        [shape=(n, *feature_shape(params)), float32].

    Raises:
        FeatureError: not a batched set, or a missing or other weights file (one line).
    """
    p = _validated(params)
    if p["set"] != "vgg16_bottleneck":
        raise FeatureError(f"{p['set']}: not a batched feature set ({', '.join(BATCHED_SETS)})")
    return _vgg.bottleneck_features(
        inputs, p["weights_sha256"], weights_path=vgg16_weights, device=device, n_threads=n_threads
    )


def extract_file(
    path: str | os.PathLike[str],
    params: Sequence[Mapping[str, Any]],
    *,
    vgg16_weights: str | os.PathLike[str] | None = None,
) -> list[np.ndarray]:
    """:func:`read_audio` at the params' sample rate, then :func:`extract`.

    Raises:
        AudioError: the file cannot be used as audio.
        FeatureError: bad params, or a missing or other VGG16 weights file.
    """
    plist = _params_list(params)
    y = read_audio(path, sr=plist[0]["sr"])
    return extract(y, plist[0]["sr"], plist, vgg16_weights=vgg16_weights)


def _one_blas_thread(*, heavy: bool = False) -> contextlib.AbstractContextManager[Any]:
    """BLAS on one thread while extract() runs in the main thread; the setting restored after.

    The products here are small (hundreds of frames by a 12-row chroma filterbank): a second BLAS
    thread brings nothing, and waking it on a busy machine costs milliseconds (measured: 5 ms per
    file instead of 2 with 2 cores under load). Switching costs ~15 us with threadpoolctl (a
    scikit-learn dependency). Other threads leave the setting alone: OpenBLAS (0.3.31) ignores a
    raise of its thread count from a thread that ran BLAS calls while another thread had lowered
    it, so a limit set and restored across threads can stick.

    Args:
        heavy: The call computes ``classic_stats`` or ``functionals``, which import librosa (and with it
            ``scipy.signal``); the other sets never load them, so their workers start fast.
    """
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return _blas_controller(heavy).limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=2)
def _blas_controller(heavy: bool) -> Any:
    """The process's BLAS libraries, found once per kind of call (a scan takes ~2 ms).

    The modules extract() uses are imported first: scipy brings its own OpenBLAS, and a library
    loaded after the scan would not be limited. ``scipy.fft`` and ``scipy.sparse`` already load
    both numpy's and scipy's; librosa, for the statistics sets only (``heavy``), is imported too so
    that whatever it loads is found as well.
    """
    import scipy.fft  # noqa: F401
    import scipy.sparse  # noqa: F401
    from threadpoolctl import ThreadpoolController

    if heavy:
        import librosa  # noqa: F401

    return ThreadpoolController()


def _params_list(params: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(params, (Mapping, str)) or not isinstance(params, Sequence):
        raise FeatureError(f"params must be a list of feature_params() dicts, got {type(params).__name__}")
    if not params:
        raise FeatureError("params is empty: give at least one feature_params() dict")
    return [_validated(p) for p in params]


class _Analysis:
    """One signal's STFT and what is derived from it, each piece computed at most once.

    Arrays are frame-major, [shape=(t, ...)], as the FFT produces them (one frame per row): each
    filterbank is one product over the rows, and the tuning estimate reads contiguous bands. Sets
    transpose to librosa's (feature, time) layout where they return a matrix.
    """

    def __init__(self, y: np.ndarray, *, sr: int, n_fft: int, hop_length: int) -> None:
        self.y, self.sr, self.n_fft, self.hop_length = y, sr, n_fft, hop_length
        self.magnitude = _magnitude(y, n_fft=n_fft, hop_length=hop_length)  # (t, 1 + n_fft // 2)
        self._memo: dict[tuple[Any, ...], Any] = {}

    def _once(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def power(self) -> np.ndarray:
        """[shape=(t, 1 + n_fft // 2)] ``|X|**2``."""
        return self._once(("power",), lambda: np.square(self.magnitude))

    def mel(self, n_mels: int) -> np.ndarray:
        """[shape=(t, n_mels)] mel power spectrogram (slaney filterbank on the power)."""
        return self._once(("mel", n_mels), lambda: self.power @ _mel_basis_t(self.sr, self.n_fft, n_mels))

    def log_mel(self, n_mels: int) -> np.ndarray:
        """[shape=(t, n_mels)] ``power_to_db(mel)`` with ref 1.0 and top_db 80, as librosa's MFCC."""
        return self._once(("log_mel", n_mels), lambda: _dsp.power_to_db(self.mel(n_mels), top_db=_TOP_DB))

    def mfcc(self, n_mfcc: int, n_mels: int) -> np.ndarray:
        """[shape=(t, n_mfcc)] orthonormal DCT-II of the log-mel, first ``n_mfcc`` coefficients."""
        import scipy.fft

        return self._once(
            ("mfcc", n_mfcc, n_mels),
            lambda: scipy.fft.dct(self.log_mel(n_mels), type=2, norm="ortho", axis=1)[:, :n_mfcc],
        )

    def chroma(self, n_chroma: int) -> np.ndarray:
        """[shape=(t, n_chroma)] ``chroma_stft(S=magnitude)``: each frame scaled to max 1."""

        def compute() -> np.ndarray:
            tuning = _estimate_tuning(self.magnitude, sr=self.sr, n_fft=self.n_fft, bins_per_octave=n_chroma)
            raw = self.magnitude @ _chroma_basis(self.sr, self.n_fft, n_chroma, tuning).T
            return _dsp.normalize(raw, norm=np.inf, axis=1)

        return self._once(("chroma", n_chroma), compute)

    @property
    def rms(self) -> np.ndarray:
        """[shape=(t,)] RMS per frame from the spectrum (``librosa.feature.rms(S=...)``).

        Used by the statistics sets only, which import librosa anyway.
        """
        import librosa

        return self._once(
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


# --------------------------------------------------------------------------------------------------
# The sets


def _classic(an: _Analysis, p: Mapping[str, Any]) -> np.ndarray:
    import scipy.fft

    # The time mean commutes with the (linear) DCT: the mean of the MFCC frames is the DCT of the
    # mean log-mel frame, without a DCT per frame.
    mean_log_mel = an.log_mel(p["n_mels"]).mean(axis=0, dtype=np.float64)
    mfcc = scipy.fft.dct(mean_log_mel, type=2, norm="ortho")[: p["n_mfcc"]]
    chroma = an.chroma(p["n_chroma"]).mean(axis=0, dtype=np.float64)
    mel = an.mel(p["n_mels"]).mean(axis=0, dtype=np.float64)
    return np.concatenate([mfcc, chroma, mel]).astype(np.float32)


def _classic_stats(an: _Analysis, p: Mapping[str, Any]) -> np.ndarray:
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


def _f0_stats(an: _Analysis, p: Mapping[str, Any]) -> np.ndarray:
    """[shape=(7,)] f0 mean, std, min, max, range, median (Hz, voiced frames) and voiced fraction."""
    f0, voiced, _ = _voicing(an, p)
    if not voiced.any():
        return np.zeros(len(_F0_STATS))
    v = f0[voiced].astype(np.float64)
    lo, hi = v.min(), v.max()
    return np.array([v.mean(), v.std(), lo, hi, hi - lo, np.median(v), voiced.mean()])


def _voicing(an: _Analysis, p: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
            f0, aperiodicity = _yin(
                an.y, sr=an.sr, fmin=p["f0_fmin"], fmax=p["f0_fmax"], frame_length=p["f0_frame_length"],
                hop_length=an.hop_length, trough_threshold=p["f0_trough_threshold"],
            )  # fmt: skip
            voiced = aperiodicity < p["f0_voicing_threshold"]
        rms = an.rms  # frames centred on the same samples as f0's (same hop, both centred)
        voiced &= (rms > 0) & (rms >= rms.max() * 10.0 ** (-p["f0_gate_db"] / 20.0))
        return f0, voiced, aperiodicity

    return an._once(("voicing", *(p[k] for k in keys)), compute)


def _functionals(an: _Analysis, p: Mapping[str, Any]) -> np.ndarray:
    """The columns of :func:`_functional_columns` (what ``functionals`` adds to ``classic_stats``)."""
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


def _spectral_shape(an: _Analysis) -> list[np.ndarray]:
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


def _voice_quality(an: _Analysis, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alpha ratio and Hammarberg index (dB) of the given frames."""
    freqs = np.fft.rfftfreq(an.n_fft, d=1.0 / an.sr)
    power = an.power[frames].astype(np.float64) + 1e-10  # (frames, freq)
    low, high = (freqs >= 50) & (freqs < 1000), (freqs >= 1000) & (freqs < 5000)
    alpha = 10.0 * np.log10(power[:, low].sum(axis=1) / power[:, high].sum(axis=1))
    below, above = freqs < 2000, (freqs >= 2000) & (freqs < 5000)
    hammarberg = 10.0 * np.log10(power[:, below].max(axis=1) / power[:, above].max(axis=1))
    return alpha, hammarberg


def _yin(
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


def _mfcc_seq(an: _Analysis, p: Mapping[str, Any]) -> np.ndarray:
    mfcc = an.mfcc(p["n_mfcc"], p["n_mels"]).T  # (n_mfcc, t)
    frames = p["frames"]
    if mfcc.shape[1] >= frames:
        out = mfcc[:, :frames]
    else:
        out = np.pad(mfcc, ((0, 0), (0, frames - mfcc.shape[1])), mode=p["pad"])
    return np.ascontiguousarray(out, dtype=np.float32)


def _melspec(an: _Analysis, p: Mapping[str, Any]) -> np.ndarray:
    image = _dsp.power_to_db(an.mel(p["n_mels"]).T, ref=np.max, top_db=p["top_db"])  # (n_mels, t)
    height, width = p["size"]
    resized = _resize_weights(image.shape[0], height) @ image @ _resize_weights(image.shape[1], width).T
    return resized.astype(np.float32)


@functools.lru_cache(maxsize=512)
def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """[shape=(n_out, n_in)] linear-interpolation weights, widened to average when shrinking.

    Half-pixel-centred triangle filter whose support grows with the shrink factor (PIL's
    ``BILINEAR`` resize): the identity when ``n_in == n_out``, ordinary bilinear interpolation with
    clamped edges when enlarging, an anti-aliased average when shrinking. Rows sum to 1.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    taps = np.arange(n_in) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(taps[None, :] - centres[:, None]) / support)
    weights /= weights.sum(axis=1, keepdims=True)
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


_COMPUTE: dict[str, Callable[[_Analysis, Mapping[str, Any]], np.ndarray]] = {
    "classic": _classic,
    "classic_stats": _classic_stats,
    "functionals": lambda an, p: np.concatenate([_classic_stats(an, p), _functionals(an, p)]).astype(
        np.float32
    ),
    "mfcc_seq": _mfcc_seq,
    "melspec": _melspec,
    "vgg16_bottleneck": _melspec,  # its network's input: finish_batch runs VGG16 over a batch of them
}
