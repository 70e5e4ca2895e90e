"""The cross-validated objective every worker runs (its pruners: :mod:`emotune.spaces._pruners`).

For fold ``k`` of ``K`` the objective fits ``space.build(params)`` on the fold's training rows and
scores the held-out rows. Plain spaces report the running mean of fold scores at step ``k`` and may
be pruned after each fold but the last. Spaces with an iterative ``fit`` (boosting rounds, epochs)
report inside each fold at steps ``k * MAX_STEPS + step``, so steps never collide, and are pruned
inside the first fold only: the survivors run the other folds for their out-of-fold probabilities.

Every trial records ``uar`` and ``accuracy`` (pooled out-of-fold), the per-fold scores of the study's
metric, the mean training score, the fit time and the worker (host:pid). Out-of-fold probabilities
of complete trials go to the blob store (never to user attributes).
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from emotune.features import score

if TYPE_CHECKING:
    import optuna


class TrialInterrupted(Exception):
    """Raised between folds when the worker was asked to stop (SIGINT of the driver)."""


@dataclass
class TrialData:
    """What a worker needs to evaluate trials: the training part and its folds."""

    X: np.ndarray
    y: np.ndarray  # int class codes into ``classes``
    folds: list[tuple[np.ndarray, np.ndarray]]
    classes: list[str]
    hashes: list[str]  # content hash per training row (row order of X)
    # When the study searches the feature set: each candidate set's matrix (same rows as X); a
    # trial's ``features`` parameter picks one.
    X_by_set: dict[str, np.ndarray] | None = None

    def matrix(self, trial: optuna.trial.Trial) -> np.ndarray:
        """The trial's matrix: ``X``, or the set it suggests among ``X_by_set``."""
        if not self.X_by_set:
            return self.X
        from emotune.search._study import FEATURES_PARAM

        return self.X_by_set[trial.suggest_categorical(FEATURES_PARAM, list(self.X_by_set))]


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def set_user_attrs(trial: optuna.trial.Trial, attrs: dict[str, Any]) -> None:
    """Set several user attributes of a running trial in one storage transaction.

    ``trial.set_user_attr`` commits once per key; on PostgreSQL each commit is a round trip and a WAL
    flush. On an RDB storage (Optuna's own cache in front of it or not) the keys are written in one
    session through the storage's per-key writer, with the same checks; on any other storage, or
    should Optuna's internals have moved, key by key through the public API.
    """
    from optuna.storages import RDBStorage

    storage = trial.storage
    backend = getattr(storage, "_backend", storage)
    write = getattr(backend, "_set_trial_attr_without_commit", None)
    cached = getattr(trial, "_cached_frozen_trial", None)
    if not isinstance(backend, RDBStorage) or write is None or cached is None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            write(session, models.TrialUserAttributeModel, trial._trial_id, key, value)
    cached.user_attrs.update(attrs)


def aligned_proba(estimator: Any, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` as (n, n_classes) columns in class-code order, whatever the fold saw."""
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    seen = np.asarray(estimator.classes_).astype(int)
    if proba.shape[1] == n_classes and np.array_equal(seen, np.arange(n_classes)):
        return proba
    out = np.zeros((proba.shape[0], n_classes))
    out[:, seen] = proba
    return out


def oof_bytes(proba: np.ndarray) -> bytes:
    """Out-of-fold probabilities as compact float32 ``.npy`` bytes."""
    buf = io.BytesIO()
    np.save(buf, proba.astype(np.float32), allow_pickle=False)
    return buf.getvalue()


def oof_from_bytes(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def make_objective(
    space: ModuleType,
    data: TrialData,
    *,
    metric: str,
    seed: int,
    save_oof: Callable[[int, bytes], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Callable[[optuna.trial.Trial], float]:
    """Build the objective: K-fold CV of ``space`` on ``data`` with pruning and recording."""
    import optuna

    from emotune.spaces._ssl_view import trial_view, viewed

    max_steps = max(1, int(getattr(space, "MAX_STEPS", 1)))
    iterative = hasattr(space, "fit")
    n_classes = len(data.classes)
    me = worker_id()

    def objective(trial: optuna.trial.Trial) -> float:
        # A library's warnings about this trial (convergence, ill-conditioning) belong in its record,
        # not on the user's terminal.
        with captured_warnings() as caught:
            try:
                return run_trial(trial)
            finally:
                if caught:
                    set_user_attrs(trial, {"warnings": summarize_warnings(caught)})

    def run_trial(trial: optuna.trial.Trial) -> float:
        trial.set_user_attr("worker", me)
        X = data.matrix(trial)
        params = space.suggest(trial)
        if viewed(space, X):  # an ssl layer stack: the trial's layer and pooling (emotune.spaces._ssl_view)
            X, _ = trial_view(trial, X)
        oof = np.zeros((len(data.y), n_classes))
        fold_scores: list[float] = []
        train_scores: list[float] = []
        fit_time = 0.0
        reported: set[int] = set()  # steps an iterative fit already reported

        for k, (tr, va) in enumerate(data.folds):
            if should_stop is not None and should_stop():
                raise TrialInterrupted(f"trial {trial.number} interrupted")
            estimator = space.build(params, seed=seed, n_classes=n_classes)
            t0 = time.perf_counter()
            if iterative:

                def record_pruned(t0: float = t0, spent: float = fit_time) -> None:
                    _record(trial, fold_scores, train_scores, spent + time.perf_counter() - t0)

                report = _step_reporter(trial, k, max_steps, reported, record_pruned)
                space.fit(estimator, X[tr], data.y[tr], X_val=X[va], y_val=data.y[va], report=report)
            else:
                estimator.fit(X[tr], data.y[tr])
            fit_time += time.perf_counter() - t0
            proba = aligned_proba(estimator, X[va], n_classes)
            oof[va] = proba
            fold_scores.append(score(metric, data.y[va], proba.argmax(axis=1)))
            train_scores.append(
                score(metric, data.y[tr], aligned_proba(estimator, X[tr], n_classes).argmax(1))
            )
            if iterative:
                continue  # judged inside the first fold only, on its own steps
            trial.report(float(np.mean(fold_scores)), k)
            if k < len(data.folds) - 1 and trial.should_prune():
                _record(trial, fold_scores, train_scores, fit_time)
                raise optuna.TrialPruned(f"pruned after fold {k}")

        pred = oof.argmax(axis=1)
        _record(
            trial,
            fold_scores,
            train_scores,
            fit_time,
            uar=score("uar", data.y, pred),
            accuracy=score("accuracy", data.y, pred),
        )
        if save_oof is not None:
            save_oof(trial.number, oof_bytes(oof))
        return float(np.mean(fold_scores))

    return objective


def _step_reporter(
    trial: optuna.trial.Trial, k: int, max_steps: int, reported: set[int], record_pruned: Callable[[], None]
) -> Callable[[int, float], None]:
    """The ``report(step, value)`` an iterative fit of fold ``k`` calls: reported at ``k * max_steps + step``
    (once per step), judged by the pruner in the first fold only (``record_pruned`` runs before it stops)."""
    import optuna

    def report(step: int, value: float) -> None:
        global_step = k * max_steps + int(step)
        if global_step not in reported:
            trial.report(float(value), global_step)
            reported.add(global_step)
        if k == 0 and trial.should_prune():
            record_pruned()
            raise optuna.TrialPruned(f"pruned at step {global_step}")

    return report


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning raised inside the block instead of printing it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def summarize_warnings(caught: Sequence[warnings.WarningMessage], *, most: int = 5) -> list[str]:
    """Distinct warnings as ``"Category: message (xN)"``, most frequent first, at most ``most``."""
    counts: dict[str, int] = {}
    for w in caught:
        text = f"{w.category.__name__}: {' '.join(str(w.message).split())[:200]}"
        counts[text] = counts.get(text, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:most]
    return [f"{text} (x{n})" if n > 1 else text for text, n in ranked]


def _record(
    trial: optuna.trial.Trial,
    fold_scores: list[float],
    train_scores: list[float],
    fit_time: float,
    **extra: float,
) -> None:
    attrs: dict[str, Any] = {"fold_scores": [round(s, 6) for s in fold_scores]}
    if train_scores:
        attrs["train_score"] = round(float(np.mean(train_scores)), 6)
    attrs["fit_time_s"] = round(fit_time, 3)
    set_user_attrs(trial, {**attrs, **extra})
