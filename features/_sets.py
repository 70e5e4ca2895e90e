"""Feature sets: every set a file needs from one decode and one short-time Fourier transform.

Six sets, each described by a JSON-clean parameter dict (:func:`feature_params`) that holds every
setting that changes its numbers, plus ``"set"`` and a code ``"version"`` (the cache keys on it):

``classic`` [shape=(n_mfcc + n_chroma + n_mels,) = (180,)]
    The 180-means recipe's vector: time means of 40 MFCC, 12 chroma and 128 mel bands, i.e. what
    ``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40)``, ``librosa.feature.chroma_stft(S=np.abs(
    librosa.stft(y)), sr=sr)`` and ``librosa.feature.melspectrogram(y=y, sr=sr)`` give, averaged
    over frames, in that order.
``classic_stats`` [shape=(D,)]
    Per-file statistics with named columns (:func:`feature_columns`); see :func:`~emotune.features._stats.stats_columns`
    for the blocks. D = 479 at the defaults.
``functionals`` [shape=(D,)]
    ``classic_stats`` followed by more functionals of the same analysis (:func:`~emotune.features._stats.functional_columns`):
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
``ssl`` [shape=(layers, 2 * dim)]
    A pretrained speech encoder's hidden states (input embeddings and every layer), each pooled over
    time as ``[mean | std]``; the model comes from ``--ssl-model`` / ``$EMOTUNE_SSL_MODEL`` and is
    keyed by its weights' content (:mod:`emotune.features._ssl`). Built by an actor pool
    (:mod:`emotune.features._ssl_build`), never with ``all``.

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

from emotune.features import _dsp, _ssl, _stats, _vgg
from emotune.features._analysis import Analysis
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
    "ssl",
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
    "ssl": 1,
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

# A pretrained encoder's pooled hidden states (emotune.features._ssl): the model's params, no default model.
_DEFAULTS["ssl"] = dict(_ssl.DEFAULTS)

# classic_stats' columns plus more functionals of the same analysis: the same parameters.
_DEFAULTS["functionals"] = dict(_DEFAULTS["classic_stats"])


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
    name: str,
    *,
    vgg16_weights: str | os.PathLike[str] | None = None,
    ssl_model: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """:func:`feature_params`, with what a set needs from outside the audio filled in.

    For ``vgg16_bottleneck``, ``weights_sha256`` is the sha256 of the weights file (``vgg16_weights``,
    else ``$EMOTUNE_VGG16_WEIGHTS``) unless given. For ``ssl``, the model's reference, family, content
    hashes, shape and rate (:func:`emotune.features._ssl.model_params` of ``ssl_model``, else
    ``$EMOTUNE_SSL_MODEL``) unless ``weights`` is given. Other sets take no extra input.

    Args:
        name: One of :data:`FEATURE_SETS`.
        vgg16_weights: A torchvision ``vgg16`` state_dict file.
        ssl_model: A local model folder or a model id in the local Hugging Face cache.
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
    if name == "ssl" and overrides.get("weights") is None:
        overrides = {**_ssl.model_params(ssl_model), **overrides}
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
    **_ssl.VALIDATORS,
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
    if p["set"] == "ssl":
        return (p["layers"], 2 * p["dim"])
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
            + [f"chroma_mean_{c}" for c in _stats.chroma_names(p["n_chroma"])]
            + [f"mel_mean_{i}" for i in range(p["n_mels"])]
        )
    if p["set"] == "classic_stats":
        return _stats.stats_columns(p)
    if p["set"] == "functionals":
        return _stats.stats_columns(p) + _stats.functional_columns(p)
    if p["set"] == "vgg16_bottleneck":
        return [f"vgg16_{c}_{i}_{j}" for c in range(512) for i in range(7) for j in range(7)]
    raise FeatureError(f"{p['set']}: a 2-D feature set has no column names (shape {feature_shape(p)})")


# --------------------------------------------------------------------------------------------------
# Extraction


def extract(
    y: np.ndarray,
    sr: int,
    params: Sequence[Mapping[str, Any]],
    *,
    vgg16_weights: str | os.PathLike[str] | None = None,
    ssl_model: str | os.PathLike[str] | None = None,
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
        ssl_model: The encoder of ``ssl`` (None: ``$EMOTUNE_SSL_MODEL``, else the params' ``model``);
            its weights must be the params' ``weights``. ``ssl`` needs no STFT.

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
    if any(p["set"] == "ssl" for p in plist):
        return _with_ssl(y, sr, plist, vgg16_weights=vgg16_weights, ssl_model=ssl_model)
    arrays = extract_inputs(y, sr, plist)
    for i, p in enumerate(plist):
        if p["set"] in BATCHED_SETS:
            arrays[i] = finish_batch(arrays[i][None], p, vgg16_weights=vgg16_weights)[0]
    return arrays


def _with_ssl(
    y: np.ndarray,
    sr: int,
    plist: list[dict[str, Any]],
    *,
    vgg16_weights: str | os.PathLike[str] | None,
    ssl_model: str | os.PathLike[str] | None,
) -> list[np.ndarray]:
    """:func:`extract` when ``ssl`` is among the sets: the encoder on the signal, the rest as usual."""
    for p in plist:
        if p["sr"] != sr:
            raise FeatureError(f"{p['set']}: the audio is at sr={sr} but the params ask for sr={p['sr']}")
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0 or not np.isfinite(y).all():
        raise FeatureError(f"audio must be a non-empty, finite 1-D array, got shape {y.shape}")
    others = [p for p in plist if p["set"] != "ssl"]
    rest = iter(extract(y, sr, others, vgg16_weights=vgg16_weights) if others else [])
    return [_ssl.encode(y, p, ssl_model=ssl_model) if p["set"] == "ssl" else next(rest) for p in plist]


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
        analysis = Analysis(y, sr=first["sr"], n_fft=first["n_fft"], hop_length=first["hop_length"])
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
    ssl_model: str | os.PathLike[str] | None = None,
) -> list[np.ndarray]:
    """:func:`read_audio` at the params' sample rate, then :func:`extract`.

    Raises:
        AudioError: the file cannot be used as audio.
        FeatureError: bad params, or a missing or other VGG16 weights file.
    """
    plist = _params_list(params)
    y = read_audio(path, sr=plist[0]["sr"])
    return extract(y, plist[0]["sr"], plist, vgg16_weights=vgg16_weights, ssl_model=ssl_model)


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


# --------------------------------------------------------------------------------------------------
# The sets


def _classic(an: Analysis, p: Mapping[str, Any]) -> np.ndarray:
    import scipy.fft

    # The time mean commutes with the (linear) DCT: the mean of the MFCC frames is the DCT of the
    # mean log-mel frame, without a DCT per frame.
    mean_log_mel = an.log_mel(p["n_mels"]).mean(axis=0, dtype=np.float64)
    mfcc = scipy.fft.dct(mean_log_mel, type=2, norm="ortho")[: p["n_mfcc"]]
    chroma = an.chroma(p["n_chroma"]).mean(axis=0, dtype=np.float64)
    mel = an.mel(p["n_mels"]).mean(axis=0, dtype=np.float64)
    return np.concatenate([mfcc, chroma, mel]).astype(np.float32)


def _mfcc_seq(an: Analysis, p: Mapping[str, Any]) -> np.ndarray:
    mfcc = an.mfcc(p["n_mfcc"], p["n_mels"]).T  # (n_mfcc, t)
    frames = p["frames"]
    if mfcc.shape[1] >= frames:
        out = mfcc[:, :frames]
    else:
        out = np.pad(mfcc, ((0, 0), (0, frames - mfcc.shape[1])), mode=p["pad"])
    return np.ascontiguousarray(out, dtype=np.float32)


def _melspec(an: Analysis, p: Mapping[str, Any]) -> np.ndarray:
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


_COMPUTE: dict[str, Callable[[Analysis, Mapping[str, Any]], np.ndarray]] = {
    "classic": _classic,
    "classic_stats": _stats.classic_stats,
    "functionals": lambda an, p: np.concatenate(
        [_stats.classic_stats(an, p), _stats.functionals(an, p)]
    ).astype(np.float32),
    "mfcc_seq": _mfcc_seq,
    "melspec": _melspec,
    "vgg16_bottleneck": _melspec,  # its network's input: finish_batch runs VGG16 over a batch of them
}
