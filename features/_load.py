"""Load a feature set from the cache as a labelled dataset: X, y, groups (speakers) and row metadata."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emotune.features._cache import (
    canonical_params,
    durations,
    open_index,
    params_key,
    read_entries,
    resolve_hashes,
)
from emotune.features._corpora import Row
from emotune.features._errors import FeatureError
from emotune.features._labels import class_names, drop_reason, label_of

__all__ = ["Dataset", "load", "speaker_normalize"]


@dataclass
class Dataset:
    """A feature matrix with its labels under one scheme, and where each row came from.

    Attributes:
        X: [shape=(n, ...), float32] one feature array per kept row.
        y: [shape=(n,), str] labels under the scheme.
        groups: [shape=(n,), str] corpus-qualified speaker ids (for grouped CV and speaker norm).
        rows: The kept rows, in the order given.
        hashes: sha256 of each kept row's file.
        classes: The scheme's classes present in ``y``, in the scheme's canonical order.
        params: The feature params the arrays were computed with.
        dropped: ``(path, reason)`` of the rows left out: no label under the scheme, no usable audio
            (failed at build time), or a length outlier.
        speaker_norm: Whether ``X`` was z-scored per speaker.
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    rows: list[Row]
    hashes: list[str]
    classes: list[str]
    params: dict[str, Any]
    dropped: list[tuple[str, str]] = field(default_factory=list)
    speaker_norm: bool = False


def load(
    rows: Sequence[Row],
    feature_set_or_params: str | Mapping[str, Any],
    *,
    scheme: str = "emotion",
    cache_dir: str | os.PathLike[str] | None = None,
    speaker_norm: bool = False,
    drop_length_outliers: float | None = None,
) -> Dataset:
    """Assemble a dataset from features already in the cache (no audio is decoded).

    Args:
        rows: Rows from :func:`scan` (any corpora).
        feature_set_or_params: A set name (default parameters; for ``vgg16_bottleneck`` those of the
            file ``$EMOTUNE_VGG16_WEIGHTS``, see :func:`default_params`) or a dict from :func:`feature_params`.
        scheme: Label scheme (one of ``SCHEMES``); rows without a label under it are dropped.
        cache_dir: The cache folder (default :func:`default_cache_dir`).
        speaker_norm: z-score each feature within each speaker (see :func:`speaker_normalize`).
        drop_length_outliers: Drop files whose duration lies more than this many robust standard
            deviations (1.4826 x the median absolute deviation) from the median duration of the
            labelled rows (the MFCC-sequence recipe dropped "the ones with extreme lengths"). None keeps all.

    Returns:
        A :class:`Dataset`.

    Raises:
        FeatureError: Bad scheme or params, ``drop_length_outliers`` not positive, or features not
            built for a file (the message names the first one; run ``emotune features build``).

    Example:
        >>> ds = load(scan(["data"]).rows, "classic", scheme="emotion", speaker_norm=True)  # doctest: +SKIP
        >>> ds.X.shape  # doctest: +SKIP
        (489, 180)
    """
    if isinstance(feature_set_or_params, str):
        from emotune.features._sets import default_params

        params = default_params(feature_set_or_params)
    else:
        params = canonical_params(feature_set_or_params)
    if drop_length_outliers is not None and not (
        isinstance(drop_length_outliers, int | float) and drop_length_outliers > 0
    ):
        raise FeatureError(f"drop_length_outliers={drop_length_outliers!r} must be a positive number or None")
    key = params_key(params)
    kept, labels, dropped = _labelled(rows, scheme)
    with open_index(cache_dir) as index:
        states = resolve_hashes(index, [row.path for row in kept])
        for state in states:
            if state.error:
                raise FeatureError(f"{state.path}: {state.error}")
        shas = [str(s.sha) for s in states]
        entries = read_entries(index, key, shas)
        failures = index.failures([key], [sha for sha in shas if sha not in entries])
        lengths = durations(index, shas) if drop_length_outliers is not None else {}
        cache = index.dir

    use = _with_features(
        kept, shas, entries, failures, dropped, what=f"{params['set']} features", cache=cache
    )
    if drop_length_outliers is not None:
        use, outliers = _drop_outliers(use, [lengths.get(shas[i]) for i in use], drop_length_outliers)
        dropped += [(kept[i].path, f"length outlier ({lengths[shas[i]]:.2f} s)") for i in outliers]

    X = _stack([entries[shas[i]] for i in use], params)
    groups = np.array([kept[i].speaker for i in use], dtype=str)
    if speaker_norm and len(use):
        X = speaker_normalize(X, groups)
    y = np.array([labels[i] for i in use], dtype=str)
    present = set(y.tolist())
    kept_rows = [kept[i] for i in use]
    return Dataset(
        X=X,
        y=y,
        groups=groups,
        rows=kept_rows,
        hashes=[shas[i] for i in use],
        classes=[c for c in class_names(scheme, kept_rows) if c in present],
        params=params,
        dropped=dropped,
        speaker_norm=speaker_norm,
    )


def _labelled(rows: Sequence[Row], scheme: str) -> tuple[list[Row], list[str], list[tuple[str, str]]]:
    """The rows with a label under ``scheme``, their labels, and ``(path, reason)`` of the others."""
    dropped: list[tuple[str, str]] = []
    kept: list[Row] = []
    labels: list[str] = []
    for row in rows:
        label = label_of(row, scheme)
        if label is None:
            dropped.append((row.path, drop_reason(row, scheme) or f"no label under {scheme!r}"))
        else:
            kept.append(row)
            labels.append(label)
    return kept, labels, dropped


def _with_features(
    kept: Sequence[Row],
    shas: Sequence[str],
    entries: Mapping[str, Any],
    failures: Mapping[str, str],
    dropped: list[tuple[str, str]],
    *,
    what: str,
    cache: Any,
) -> list[int]:
    """Indices of the rows whose features are cached; a file without usable audio joins ``dropped``.

    Raises:
        FeatureError: A file whose features were never built (the message names it and the cache).
    """
    use: list[int] = []
    for i, (row, sha) in enumerate(zip(kept, shas, strict=True)):
        if sha in entries:
            use.append(i)
        elif sha in failures:
            dropped.append((row.path, f"no usable audio: {failures[sha]}"))
        else:
            missing = sum(1 for s in shas if s not in entries and s not in failures)
            raise FeatureError(
                f"{what} of {row.path} are not in the cache {cache} ({missing} file(s) "
                "missing): run `emotune features build` on this data first"
            )
    return use


def _stack(entries: Sequence[tuple[str, tuple[int, ...], bytes]], params: Mapping[str, Any]) -> np.ndarray:
    """One float32 array from the raw entries, without intermediate copies."""
    if not entries:
        from emotune.features._sets import feature_shape

        return np.zeros((0, *feature_shape(params)), dtype=np.float32)
    shape = entries[0][1]
    X = np.empty((len(entries), *shape), dtype=np.float32)
    for i, (dtype, entry_shape, data) in enumerate(entries):
        if entry_shape != shape:
            raise FeatureError(
                f"{params['set']}: cached arrays have different shapes ({shape} and {entry_shape}); "
                "the cache is inconsistent: rebuild it in a new folder"
            )
        X[i] = np.frombuffer(data, dtype=dtype).reshape(shape)
    return X


def _drop_outliers(use: list[int], lengths: Sequence[float | None], k: float) -> tuple[list[int], list[int]]:
    """Split ``use`` into (kept, outliers) by robust z-score of the durations."""
    known = np.array([d for d in lengths if d is not None], dtype=np.float64)
    if known.size < 3:
        return use, []
    median = float(np.median(known))
    scale = 1.4826 * float(np.median(np.abs(known - median)))
    if scale == 0.0:
        scale = float(known.std())
    if scale == 0.0:
        return use, []
    kept: list[int] = []
    outliers: list[int] = []
    for i, d in zip(use, lengths, strict=True):
        (outliers if d is not None and abs(d - median) > k * scale else kept).append(i)
    return kept, outliers


def speaker_normalize(X: np.ndarray, groups: Sequence[Any] | np.ndarray) -> np.ndarray:
    """z-score every feature element within each speaker, from that speaker's own rows.

    Only the features are used (never labels), so a held-out speaker is normalised with statistics
    of its own audio. Works for any ``X`` of shape ``(n, ...)``: each element of the trailing shape
    is one feature. A feature constant within a speaker (std 0) is only centred.

    Args:
        X: [shape=(n, ...)] features.
        groups: [shape=(n,)] speaker id of each row.

    Returns:
        [shape=X.shape, float32] the normalised copy.

    Raises:
        FeatureError: ``groups`` does not have one entry per row.

    Example:
        >>> Z = speaker_normalize(np.array([[1.0], [3.0], [10.0]]), ["a", "a", "b"])
        >>> Z.ravel().tolist()
        [-1.0, 1.0, 0.0]
    """
    X = np.asarray(X)
    groups = np.asarray(groups)
    if groups.shape != (X.shape[0],):
        raise FeatureError(f"groups has shape {groups.shape}, expected ({X.shape[0]},): one speaker per row")
    out = np.empty(X.shape, dtype=np.float32)
    _, inverse = np.unique(groups, return_inverse=True)
    for g in range(int(inverse.max()) + 1 if inverse.size else 0):
        idx = np.flatnonzero(inverse == g)
        block = X[idx].astype(np.float64)
        mean = block.mean(axis=0)
        std = block.std(axis=0)
        # A constant feature has a std of rounding noise, not 0: treat it as 0 (centre only).
        std[std <= 1e-10 * np.abs(block).max(axis=0)] = 1.0
        out[idx] = (block - mean) / std
    return out
