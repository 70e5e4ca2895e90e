"""A weighted soft voter over members that may read different feature sets, and its weights.

:class:`SoftVoter` averages its members' class probabilities with fixed weights. Members may consume
different inputs (an MLP on ``classic``, a CNN on ``mfcc_seq``): give each member an input key and
pass ``X`` as a dict ``{key: array}``; the voter feeds each member its own array. When every member
reads the same input, a plain array works too, and the voter is an ordinary scikit-learn classifier.

:func:`greedy_selection` chooses the weights from stored out-of-fold probabilities only: ensemble
selection with replacement (Caruana et al., "Ensemble selection from libraries of models", ICML
2004), as AutoGluon and auto-sklearn use it. It starts from the best single member, adds the member
that helps most at each step (a member may be added many times: its count is its weight), and keeps
the best ensemble seen along the way. The result is never worse on the out-of-fold data than the
best member: that ensemble is one of those seen, and a final check on the exact blend the voter
computes falls back to the best member if floating-point rounding ever says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data

from emotune.features import log_loss, score
from emotune.search._objective import aligned_proba


def normalize_weights(weights: Sequence[float] | np.ndarray | None, n: int) -> np.ndarray:
    """Weights as a float array that sums to 1 (``None``: equal weights).

    Raises:
        ValueError: wrong length, a negative or non-finite weight, or all weights zero.
    """
    if n < 1:
        raise ValueError("a voter needs at least one member")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != (n,):
        raise ValueError(f"weights has {w.size} values for {n} members")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
    total = w.sum()
    if total <= 0:
        raise ValueError("weights must not all be zero")
    return w / total


def blend(probas: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """The weighted mean of aligned probability matrices (each ``(n, n_classes)``).

    This is the one function that combines probabilities, used by the voter and by the weight
    search alike, so a score computed on out-of-fold data is the score of the voter's own blend.
    A member of weight zero is skipped; a single member of weight one is returned bit for bit.
    """
    w = normalize_weights(weights, len(probas))
    out = np.zeros(np.shape(probas[0]), dtype=np.float64)
    for wi, p in zip(w, probas, strict=True):
        if wi > 0:
            out += wi * np.asarray(p, dtype=np.float64)
    return out


class SoftVoter(ClassifierMixin, BaseEstimator):
    """Weighted soft voting over scikit-learn classifiers that may read different inputs.

    Members are cloned and fitted on integer class codes (the position of each label in
    ``classes_``), as the search objective fits them, so their probabilities line up with the
    out-of-fold probabilities the weights were chosen on.

    Args:
        estimators: ``[(name, estimator), ...]``; each estimator has ``fit``, ``predict_proba`` and
            ``classes_``.
        weights: One non-negative weight per member (``None``: equal). Only ratios matter.
        inputs: One input key per member (e.g. a feature-set name), or ``None`` when every member
            reads the same array. With keys, ``X`` may be a dict ``{key: array}``.
        classes: The class order of ``classes_`` (``None``: the sorted labels seen in ``fit``).
            Labels of ``y`` outside it are an error.

    Example:
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklearn.neighbors import KNeighborsClassifier
        >>> voter = SoftVoter([("lr", LogisticRegression()), ("knn", KNeighborsClassifier(3))],
        ...                   weights=[2, 1], inputs=["classic", "classic_stats"])
        >>> voter.fit({"classic": X1, "classic_stats": X2}, y)  # doctest: +SKIP
        >>> voter.predict_proba({"classic": X1, "classic_stats": X2})  # doctest: +SKIP
    """

    def __init__(
        self,
        estimators: Sequence[tuple[str, Any]],
        *,
        weights: Sequence[float] | None = None,
        inputs: Sequence[str | None] | None = None,
        classes: Sequence[Any] | None = None,
    ) -> None:
        self.estimators = estimators
        self.weights = weights
        self.inputs = inputs
        self.classes = classes

    # --- fitting -------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> SoftVoter:
        """Fit a clone of every member on its own input; ``y`` holds class labels."""
        names = self._check_members()
        self.weights_ = normalize_weights(self.weights, len(names))
        if y is None:
            raise ValueError("SoftVoter requires y to be passed, but the target y is None")
        parts = self._inputs_of(X, reset=True)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if len(y) != len(parts[0]):
            raise ValueError(f"X has {len(parts[0])} rows but y has {len(y)}")
        if self.classes is None:
            self.classes_ = np.unique(y)
        else:
            self.classes_ = np.asarray(list(self.classes))
            if len(set(self.classes_.tolist())) != len(self.classes_):
                raise ValueError(f"classes has duplicates: {self.classes_.tolist()}")
        code = {c: i for i, c in enumerate(self.classes_.tolist())}
        unknown = sorted({str(v) for v in y.tolist() if v not in code})
        if unknown:
            raise ValueError(f"y has labels outside classes: {', '.join(unknown[:5])}")
        codes = np.array([code[v] for v in y.tolist()], dtype=np.int64)
        self.estimators_ = [
            clone(est).fit(part, codes) for (_, est), part in zip(self.estimators, parts, strict=True)
        ]
        self.names_ = names
        return self

    # --- prediction ----------------------------------------------------------------------------

    def member_probas(self, X: Any) -> list[np.ndarray]:
        """Each member's probabilities, ``(n, n_classes)`` columns in ``classes_`` order."""
        check_is_fitted(self, "estimators_")
        parts = self._inputs_of(X, reset=False)
        n_classes = len(self.classes_)
        return [
            aligned_proba(est, part, n_classes) for est, part in zip(self.estimators_, parts, strict=True)
        ]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Weighted mean of the members' probabilities, ``(n, n_classes)`` in ``classes_`` order."""
        return blend(self.member_probas(X), self.weights_)

    def predict(self, X: Any) -> np.ndarray:
        """The class of highest blended probability."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # --- helpers -------------------------------------------------------------------------------

    def _check_members(self) -> list[str]:
        if not self.estimators:
            raise ValueError("a voter needs at least one member")
        names = []
        for item in self.estimators:
            if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError("estimators must be a list of (name, estimator) pairs")
            names.append(item[0])
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        if self.inputs is not None and len(self.inputs) != len(names):
            raise ValueError(f"inputs has {len(self.inputs)} keys for {len(names)} members")
        return names

    def _keys(self) -> list[str | None]:
        return list(self.inputs) if self.inputs is not None else [None] * len(self.estimators)

    def _inputs_of(self, X: Any, *, reset: bool) -> list[Any]:
        """The validated array each member reads (a dict: one per key; else one shared array)."""
        keys = self._keys()
        if isinstance(X, Mapping) and not issparse(X):  # scipy's sparse matrices register as Mappings
            arrays: dict[str, np.ndarray] = {}
            for (name, _), key in zip(self.estimators, keys, strict=True):
                if key is None:
                    raise ValueError(f"member {name!r} has no input key, so X cannot be a dict")
                if key not in X:
                    raise ValueError(f"X has no input {key!r} (member {name!r} reads it)")
                if key not in arrays:
                    arrays[key] = check_array(
                        X[key], allow_nd=True, ensure_all_finite=False, input_name=f"X[{key!r}]"
                    )
            lengths = {len(a) for a in arrays.values()}
            if len(lengths) > 1:
                raise ValueError(f"the inputs of X have different numbers of rows: {sorted(lengths)}")
            return [arrays[str(k)] for k in keys]
        distinct = {k for k in keys if k is not None}
        if len(distinct) > 1:
            raise ValueError(
                f"members read different inputs ({', '.join(sorted(distinct))}): pass X as a dict"
            )
        arr = validate_data(self, X, reset=reset, allow_nd=True, ensure_all_finite=False)
        return [arr] * len(keys)


# --- weights from out-of-fold probabilities ----------------------------------------------------


@dataclass
class Selection:
    """The outcome of greedy ensemble selection.

    Attributes:
        counts: How many times each candidate was picked (its weight, before normalisation).
        weights: ``counts`` normalised to sum to 1.
        score: The metric of the chosen blend on the out-of-fold data.
        member_scores: The metric of each candidate alone.
        best_member: Index of the best single candidate (where the search starts).
        trajectory: The metric after each step (step 0 = the best member alone).
        chosen_step: The step whose ensemble was kept.
    """

    counts: np.ndarray
    weights: np.ndarray
    score: float
    member_scores: list[float]
    best_member: int
    trajectory: list[float] = field(default_factory=list)
    chosen_step: int = 0


def _score(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """The study metric of the argmax of ``proba``."""
    return score(metric, y, proba.argmax(axis=1))


def greedy_selection(
    oof: Sequence[np.ndarray], y: np.ndarray, *, metric: str = "uar", iterations: int = 50
) -> Selection:
    """Greedy ensemble selection with replacement on out-of-fold probabilities.

    Args:
        oof: One ``(n, n_classes)`` out-of-fold probability matrix per candidate, columns in the
            same class order, rows in the same order as ``y``.
        y: Integer class codes, ``(n,)``.
        metric: ``uar`` or ``accuracy``: what the selection maximises. Ties are broken by the
            lower log loss (accuracy-like metrics tie often on small data), then by the earlier
            candidate, so the result is deterministic.
        iterations: Ensemble size (picks, with replacement), as AutoGluon's 25-50.

    Returns:
        The selection; ``score >= member_scores[best_member] == max(member_scores)`` always, where
        ``score`` is the metric of ``blend(oof, weights)``.
    """
    if not oof:
        raise ValueError("greedy selection needs at least one candidate")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    y = np.asarray(y, dtype=np.int64)
    probas = [np.asarray(p, dtype=np.float64) for p in oof]
    shapes = {p.shape for p in probas}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or probas[0].shape[0] != len(y):
        raise ValueError(f"out-of-fold matrices must all be (n={len(y)}, n_classes), got {sorted(shapes)}")

    def rank(p: np.ndarray) -> tuple[float, float]:
        # Log loss rounded, so that float noise of the running sum never counts as an improvement.
        return _score(metric, y, p), -round(log_loss(y, p), 9)

    alone = [rank(p) for p in probas]
    member_scores = [a[0] for a in alone]
    best = max(range(len(probas)), key=lambda i: (alone[i], -i))
    counts = np.zeros(len(probas), dtype=np.int64)
    counts[best] = 1
    kept, kept_rank, kept_step = counts.copy(), alone[best], 0
    trajectory = [alone[best][0]]
    running = probas[best].copy()
    if len(probas) > 1:
        for step in range(1, iterations):
            k = step + 1
            ranks = [rank((running + p) / k) for p in probas]
            pick = max(range(len(probas)), key=lambda i: (ranks[i], -i))
            running += probas[pick]
            counts[pick] += 1
            trajectory.append(ranks[pick][0])
            if ranks[pick] > kept_rank:
                kept, kept_rank, kept_step = counts.copy(), ranks[pick], step

    final = _score(metric, y, blend(probas, kept))
    if final < member_scores[best]:
        # The running mean and the voter's blend round differently; never hand back a worse blend.
        kept = np.zeros_like(counts)
        kept[best] = 1
        kept_step = 0
        final = _score(metric, y, blend(probas, kept))
    return Selection(
        counts=kept,
        weights=normalize_weights(kept, len(kept)),
        score=final,
        member_scores=member_scores,
        best_member=best,
        trajectory=trajectory,
        chosen_step=kept_step,
    )
