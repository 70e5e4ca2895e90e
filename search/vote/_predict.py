"""Classify audio files with a model directory: labels and unrounded class probabilities.

Features are computed from the audio with exactly the parameters stored in the manifest (no feature
cache involved), one decode per file. Speaker normalisation (see the README): when a
member was trained on per-speaker z-scored features, the files given in the same call are grouped
by speaker (when the corpus reader can name the speaker from the file name) and a speaker with at
least :data:`MIN_SPEAKER_FILES` readable files is normalised with its own statistics
(``"speaker_norm": "speaker"``); any other file with the training part's pooled statistics stored
in the manifest (``"training"``). A model without speaker normalisation reports ``"none"``.

``window``: long recordings are cut into windows of that many seconds (at least
:data:`MIN_WINDOW_SECONDS`; the last part joins the previous window when shorter than half a
window); every window is classified and the file's probabilities are the mean of its windows'. The
file is read window by window (:func:`emotune.features._audio.read_windows`), so a recording of any
length is classified in memory bounded by one window. Without a window a file is read whole, up to
:data:`emotune.features._audio.MAX_SECONDS` seconds (a longer one is refused, naming the limit and
``--window``). With speaker normalisation, a speaker's statistics come from all windows of that
speaker's files.

Files are found by the one scanning rule of :mod:`emotune.features._corpora`: only regular files are
read; a FIFO, a device (``x.wav -> /dev/zero``) or a socket is reported and never opened. A file that
cannot be read or analysed is reported (path and reason) and skipped; the others are still
classified.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotune.features import EmotuneError
from emotune.features._audio import windows_of

__all__ = ["MIN_SPEAKER_FILES", "MIN_WINDOW_SECONDS", "collect_files", "predict", "windows_of"]

MIN_SPEAKER_FILES = 5
# The shortest window classified: a few syllables. Shorter ones hold a handful of STFT frames
# (one frame is 2048 samples, 93 ms at 22,050 Hz), whose statistics say nothing about emotion.
MIN_WINDOW_SECONDS = 0.5


class PredictError(EmotuneError):
    """Nothing could be classified, or a bad option."""


@dataclass
class Prediction:
    """One file's result."""

    path: str
    label: str
    probabilities: dict[str, float]
    speaker_norm: str  # "speaker" | "training" | "none"
    speaker: str | None = None
    windows: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "probabilities": self.probabilities,
            "speaker_norm": self.speaker_norm,
            "speaker": self.speaker,
        }
        if self.windows is not None:
            doc["windows"] = self.windows
        return doc


@dataclass
class PredictResult:
    predictions: list[Prediction]
    errors: list[tuple[str, str]]  # (path, reason)
    manifest: dict[str, Any] = field(default_factory=dict)


def collect_files(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Audio files under ``paths`` by the one scanning rule, and the paths that cannot be read.

    A regular file named explicitly is always tried (its content decides whether it is audio);
    inside folders, files with an audio extension are taken. See
    :func:`emotune.features._corpora.collect_audio`.
    """
    from emotune.features._corpora import collect_audio

    return collect_audio(paths)


def speakers_of(files: Sequence[str]) -> dict[str, str]:
    """Speaker names the corpus readers can tell from file names (unknown speakers left out)."""
    from emotune.features import scan

    if not files:
        return {}
    try:
        rows = scan(list(files)).rows
    except EmotuneError:
        return {}
    out = {}
    for r in rows:
        if not r.speaker.endswith(":unknown"):
            out[os.path.abspath(r.path)] = r.speaker
    return {f: out[os.path.abspath(f)] for f in files if os.path.abspath(f) in out}


def _stft_groups(inputs: dict[str, Any]) -> list[tuple[int, list[str]]]:
    """Input keys grouped by (sr, n_fft, hop_length): one decode + STFT per group."""
    groups: dict[tuple[int, int, int], list[str]] = {}
    for key, spec in inputs.items():
        p = spec["feature_params"]
        groups.setdefault((int(p["sr"]), int(p["n_fft"]), int(p["hop_length"])), []).append(key)
    return [(sig[0], keys) for sig, keys in groups.items()]


def extract_for(
    path: str, inputs: dict[str, Any], *, window: float | None = None
) -> tuple[dict[str, np.ndarray], list[tuple[float, float]]]:
    """Each input's features of one file: ``{key: (n_windows, ...)}`` and the windows in seconds.

    Raises:
        AudioError / FeatureError: the file cannot be read or analysed.
    """
    from emotune.features import extract, read_audio
    from emotune.features._audio import read_windows
    from emotune.features._ray import guard_numba_cache

    guard_numba_cache()
    out: dict[str, np.ndarray] = {}
    spans: list[tuple[float, float]] = []
    for sr, keys in _stft_groups(inputs):
        params = [inputs[k]["feature_params"] for k in keys]
        per_window: list[list[np.ndarray]] = []
        if window:
            spans = []
            for start, end, y in read_windows(path, sr=sr, seconds=window):
                spans.append((start, end))
                per_window.append(extract(y, sr, params))
        else:
            y = read_audio(path, sr=sr)
            spans = [(0.0, len(y) / sr)]
            per_window.append(extract(y, sr, params))
        for j, key in enumerate(keys):
            out[key] = np.stack([feats[j] for feats in per_window])
    return out, spans


def _z(X: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """``(X - mean) / std`` per feature element with the training statistics (std 0: only centred)."""
    shape = tuple(stats["shape"])
    if tuple(X.shape[1:]) != shape:
        raise PredictError(f"training statistics have shape {shape}, features {tuple(X.shape[1:])}")
    mean = np.asarray(stats["mean"], dtype=np.float64).reshape(shape)
    std = np.asarray(stats["std"], dtype=np.float64).reshape(shape)
    std = np.where(std == 0, 1.0, std)
    return ((X.astype(np.float64) - mean) / std).astype(np.float32)


def normalize_inputs(
    arrays: dict[str, np.ndarray],
    owners: np.ndarray,
    files: Sequence[str],
    inputs: dict[str, Any],
    speakers: dict[str, str],
) -> list[str]:
    """Apply speaker normalisation in place where the model used it; the mode of each file."""
    from emotune.features import speaker_normalize

    uses = any(spec.get("speaker_norm") for spec in inputs.values())
    if not uses:
        return ["none"] * len(files)
    counts: dict[str, int] = {}
    for f in files:
        if f in speakers:
            counts[speakers[f]] = counts.get(speakers[f], 0) + 1
    modes = [
        "speaker" if counts.get(speakers.get(f, ""), 0) >= MIN_SPEAKER_FILES else "training" for f in files
    ]
    row_mode = np.array([modes[i] for i in owners])
    row_speaker = np.array([speakers.get(files[i], "") for i in owners], dtype=object)
    by_speaker = row_mode == "speaker"
    for key, spec in inputs.items():
        if not spec.get("speaker_norm"):
            continue
        X = arrays[key].astype(np.float64)
        if by_speaker.any():
            X[by_speaker] = speaker_normalize(X[by_speaker], row_speaker[by_speaker])
        if (~by_speaker).any():
            X[~by_speaker] = _z(X[~by_speaker], spec["training_stats"])
        arrays[key] = X.astype(arrays[key].dtype)
    return modes


def predict(
    model_dir: str | Path,
    paths: Sequence[str | os.PathLike[str]],
    *,
    window: float | None = None,
    progress: bool = False,
    on_error: Callable[[str, str], None] | None = None,
) -> PredictResult:
    """Classify files and folders with a model directory.

    Args:
        model_dir: A directory written by ``emotune ensemble`` (verified before use).
        paths: Audio files and folders.
        window: Seconds per window (``None``: whole files).
        progress: A progress bar on stderr.
        on_error: Called with ``(path, reason)`` for each file that cannot be classified.

    Returns:
        One :class:`Prediction` per classified file, in input order, and the errors.

    Raises:
        ModelDirError: the model directory is refused (checksums, files, feature version).
        PredictError: ``window`` is shorter than :data:`MIN_WINDOW_SECONDS`.
    """
    from emotune.search.vote._modeldir import load

    if window is not None and not window >= MIN_WINDOW_SECONDS:
        raise PredictError(
            f"--window {window:g}: windows shorter than {MIN_WINDOW_SECONDS:g} s hold too few frames to "
            f"classify; the smallest window is {MIN_WINDOW_SECONDS:g} s"
        )
    voter, manifest = load(model_dir)
    classes = [str(c) for c in manifest["classes"]]
    inputs: dict[str, Any] = manifest["inputs"]
    _check_encoders(inputs)
    files, errors = collect_files(paths)
    report = on_error or (lambda p, r: None)
    for p, r in errors:
        report(p, r)

    good, spans, parts = _extract_all(
        files, inputs, window=window, progress=progress, errors=errors, report=report
    )
    if not good:
        return PredictResult([], errors, manifest)

    owners = np.concatenate([np.full(len(sp), i) for i, sp in enumerate(spans)])
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    speakers = speakers_of(good)
    modes = normalize_inputs(arrays, owners, good, inputs, speakers)
    proba = voter.predict_proba(arrays)
    out = [
        _prediction(f, proba[owners == i], spans[i] if window else None, classes, modes[i], speakers.get(f))
        for i, f in enumerate(good)
    ]
    return PredictResult(out, errors, manifest)


def _check_encoders(inputs: dict[str, Any]) -> None:
    """Refuse, before any file is read, an ``ssl`` input whose encoder is missing or other weights.

    The encoder is ``$EMOTUNE_SSL_MODEL`` (``--ssl-model``) when set, else the manifest's reference;
    it must hold the weights the model was trained on (by content).
    """
    from emotune.features._ssl import checked_model_dir

    for spec in inputs.values():
        if spec["feature_params"].get("set") == "ssl":
            checked_model_dir(spec["feature_params"])


def _extract_all(
    files: Sequence[str],
    inputs: dict[str, Any],
    *,
    window: float | None,
    progress: bool,
    errors: list[tuple[str, str]],
    report: Callable[[str, str], None],
) -> tuple[list[str], list[list[tuple[float, float]]], dict[str, list[np.ndarray]]]:
    """Each file's features for every input (and its windows' spans); a file that fails joins ``errors``.

    Returns:
        The files that worked, their spans, and per input the feature rows of each of them.
    """
    from emotune.features import AudioError, FeatureError

    iterator: Any = files
    if progress and len(files) > 1:
        from tqdm import tqdm

        iterator = tqdm(files, desc="features", unit="file", file=sys.stderr, leave=False)
    good: list[str] = []
    spans: list[list[tuple[float, float]]] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in inputs}
    for f in iterator:
        try:
            feats, sp = extract_for(f, inputs, window=window)
        except (AudioError, FeatureError) as exc:
            reason = exc.reason if isinstance(exc, AudioError) else str(exc)
            errors.append((f, reason))
            report(f, reason)
            continue
        good.append(f)
        spans.append(sp)
        for k in inputs:
            parts[k].append(feats[k])
    return good, spans, parts


def _prediction(
    path: str,
    rows: np.ndarray,
    spans: Sequence[tuple[float, float]] | None,
    classes: Sequence[str],
    speaker_norm: str,
    speaker: str | None,
) -> Prediction:
    """A file's prediction from its windows' probabilities (one row for a whole file): their mean."""
    mean = rows.mean(axis=0)
    windows = None
    if spans is not None:
        windows = [
            {
                "start": round(a, 3),
                "end": round(b, 3),
                "label": classes[int(np.argmax(r))],
                "probabilities": dict(zip(classes, map(float, r), strict=True)),
            }
            for (a, b), r in zip(spans, rows, strict=True)
        ]
    return Prediction(
        path=path,
        label=classes[int(np.argmax(mean))],
        probabilities=dict(zip(classes, map(float, mean), strict=True)),
        speaker_norm=speaker_norm,
        speaker=speaker,
        windows=windows,
    )


def format_text(predictions: Sequence[Prediction]) -> str:
    """One line per file (label, its probability, normalisation), then every class probability."""
    lines = []
    for p in predictions:
        lines.append(f"{p.path}: {p.label} (p={p.probabilities[p.label]!r}, speaker_norm={p.speaker_norm})")
        lines.append("    " + "  ".join(f"{c}={v!r}" for c, v in p.probabilities.items()))
        for w in p.windows or []:
            lines.append(
                f"    {w['start']:8.2f}-{w['end']:.2f} s: {w['label']} (p={w['probabilities'][w['label']]!r})"
            )
    return "\n".join(lines)
