"""The stacked voter, and the choice between it and greedy weights on out-of-fold data only.

:class:`StackedVoter` is a :class:`~emotune.search.vote._voter.SoftVoter` whose blend is learned: a
regularised multinomial logistic regression (the meta-model) reads the log-probabilities of every
member and returns the class probabilities (Wolpert's stacked generalisation, as auto-sklearn and
AutoGluon's stackers do it). The meta-model is fit on the members' *out-of-fold* probabilities from
the search, never on probabilities of rows a member was trained on; refitting the voter refits the
members only.

:func:`choose_voter` decides between greedy weights and stacking (with a few strengths of the
meta-model's regularisation) by cross-validation on the out-of-fold matrices, grouped as the study's
own folds: for each fold, the weights or the meta-model are chosen on the other folds' rows and
scored on the fold's rows. Nothing outside the training part is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from emotune.features import score
from emotune.search.vote._defaults import VOTERS
from emotune.search.vote._voter import SoftVoter, blend, greedy_selection

__all__ = ["STACK_C", "VOTERS", "StackedVoter", "VoterChoice", "choose_voter", "fit_meta"]

# Inverse regularisation strengths tried for the meta-model (few: each is one more chance to overfit).
STACK_C = (0.003, 0.01, 0.03, 0.1)
_EPS = 1e-6


def meta_features(probas: Sequence[np.ndarray]) -> np.ndarray:
    """Members' probabilities side by side, as log-probabilities: ``(n, members * n_classes)``."""
    return np.hstack([np.log(np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0)) for p in probas])


def fit_meta(probas: Sequence[np.ndarray], y: np.ndarray, *, C: float, n_classes: int) -> Any:
    """The meta-model fit on out-of-fold probabilities ``probas`` and class codes ``y``."""
    from sklearn.linear_model import LogisticRegression

    meta = LogisticRegression(C=C, max_iter=2000, class_weight="balanced")
    meta.fit(meta_features(probas), y)
    meta.n_classes_total_ = n_classes
    meta.n_rows_ = len(y)  # how many out-of-fold rows it was fit on
    return meta


def _meta_proba(meta: Any, probas: Sequence[np.ndarray]) -> np.ndarray:
    n = len(probas[0])
    out = np.zeros((n, meta.n_classes_total_))
    out[:, meta.classes_] = meta.predict_proba(meta_features(probas))
    return out


class StackedVoter(SoftVoter):
    """A soft voter whose blend is a fitted meta-model over its members' log-probabilities.

    Args:
        estimators, inputs, classes: as :class:`SoftVoter`.
        meta: The meta-model from :func:`fit_meta`, already fit on out-of-fold probabilities of
            these members (in this order). ``fit`` refits the members, never the meta-model.
    """

    def __init__(
        self,
        estimators: Sequence[tuple[str, Any]],
        *,
        meta: Any,
        inputs: Sequence[str | None] | None = None,
        classes: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(estimators, weights=None, inputs=inputs, classes=classes)
        self.meta = meta

    def predict_proba(self, X: Any) -> np.ndarray:
        """The meta-model's class probabilities, ``(n, n_classes)`` in ``classes_`` order."""
        check_is_fitted(self, "estimators_")
        return _meta_proba(self.meta, self.member_probas(X))


@dataclass
class VoterChoice:
    """Which voter the out-of-fold cross-validation chose, and what each option scored there."""

    kind: str  # "greedy" or "stacked"
    C: float | None  # the meta-model's strength when stacked
    cv_scores: dict[str, float] = field(default_factory=dict)  # option -> pooled CV metric
    cv_proba: np.ndarray | None = None  # the chosen option's cross-validated probabilities


def choose_voter(
    oof: Sequence[np.ndarray],
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    metric: str,
    iterations: int,
    voter: str = "auto",
) -> VoterChoice:
    """Greedy weights or stacking, chosen by cross-validation over ``folds`` of the out-of-fold rows.

    Args:
        oof: Each candidate's out-of-fold probabilities (rows as ``y``).
        y: Class codes of the training rows.
        folds: ``(fit rows, score rows)`` index pairs over the rows (the study's folds).
        metric: ``uar`` or ``accuracy``.
        iterations: Greedy selection's ensemble size.
        voter: ``auto`` (choose), ``greedy`` or ``stacked`` (score that one only; stacked still picks C).

    Returns:
        The choice. Ties go to greedy weights (the simpler model).
    """
    if voter not in VOTERS:
        raise ValueError(f"voter must be one of {', '.join(VOTERS)}, got {voter!r}")
    y = np.asarray(y, dtype=np.int64)
    n_classes = oof[0].shape[1]
    options: list[tuple[str, float | None]] = []
    if voter in ("auto", "greedy"):
        options.append(("greedy", None))
    if voter in ("auto", "stacked"):
        options += [("stacked", c) for c in STACK_C]
    pooled = {opt: np.zeros((len(y), n_classes)) for opt in options}
    for fit_rows, score_rows in folds:
        part = [p[fit_rows] for p in oof]
        held = [p[score_rows] for p in oof]
        for kind, c in options:
            if kind == "greedy":
                sel = greedy_selection(part, y[fit_rows], metric=metric, iterations=iterations)
                pooled[(kind, c)][score_rows] = blend(held, sel.weights)
            else:
                meta = fit_meta(part, y[fit_rows], C=float(c or 1.0), n_classes=n_classes)
                pooled[(kind, c)][score_rows] = _meta_proba(meta, held)
    scores = {opt: score(metric, y, p.argmax(axis=1)) for opt, p in pooled.items()}
    best = max(options, key=lambda o: (scores[o], o[0] == "greedy"))
    named = {(k if c is None else f"{k}(C={c:g})"): round(v, 6) for (k, c), v in scores.items()}
    return VoterChoice(best[0], best[1], named, pooled[best])
