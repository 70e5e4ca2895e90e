"""Ensembles: the best trials of several studies -> one weighted soft voter, tested once.

The studies must share their target, protocol, seed and dataset, hence their test split. The best
``top_k`` complete trials of each study are the candidates; their stored out-of-fold probabilities
(over the training part) are all the weight search sees (:func:`~emotune.search.vote._voter.
greedy_selection`). The chosen members are then refit on the whole training part, each on its own
feature set, and the voter is evaluated once on the test split. Each study's best trial is refit
too, if the voter did not choose it, so every study has a test number beside the voter's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotune.features import EmotuneError, scores
from emotune.search._study import StudyData, StudySpec
from emotune.search.vote._defaults import DEFAULT_ITERATIONS, DEFAULT_TOP_K
from emotune.search.vote._stack import VOTERS, StackedVoter, VoterChoice, choose_voter, fit_meta
from emotune.search.vote._table import _cm_title, confusion_png

if TYPE_CHECKING:
    from emotune.search.vote._voter import Selection


class EnsembleError(EmotuneError):
    """Studies that cannot be ensembled, or a study without usable trials."""


@dataclass
class Opened:
    """A study opened for ensembling."""

    name: str
    study: Any  # optuna.Study
    spec: StudySpec
    data: StudyData


@dataclass
class Candidate:
    """One complete trial that may join the voter."""

    study: str
    trial: int
    spec: StudySpec
    params: dict[str, Any]  # what space.suggest returned for the trial's parameters
    value: float  # the study's objective (mean of fold scores)
    oof: np.ndarray  # (n_train, n_classes), training-row order, class order
    key: str = ""  # input key (feature set, with +speaker_norm / @params when needed)

    @property
    def name(self) -> str:
        return f"{self.study}#{self.trial}"

    @property
    def space_ref(self) -> str:
        return self.spec.space_path or self.spec.space


@dataclass
class InputSpec:
    """One array the voter reads: a feature set with its parameters and normalisation."""

    key: str
    feature_set: str
    feature_params: dict[str, Any]
    speaker_norm: bool
    training_stats: dict[str, list[float]] | None = None


@dataclass
class EnsembleResult:
    """What ``ensemble`` made: the voter, its report and where it was written."""

    voter: Any
    manifest: dict[str, Any]
    rows: list[dict[str, Any]]  # the table: one row per candidate, then the voter
    confusion: np.ndarray | None
    classes: list[str]
    out: Path | None = None
    selection: Any = None
    timings: dict[str, float] = field(default_factory=dict)


def _say(message: str, progress: bool) -> None:
    if progress:
        print(f"emotune: {message}", file=sys.stderr, flush=True)


# --- studies ------------------------------------------------------------------------------------


def open_studies(url: str, names: Sequence[str], *, reroot: str | Path | None = None) -> list[Opened]:
    """Open the studies and check that they can be ensembled (one split)."""
    from emotune.search._search import open_study

    if not names:
        raise EnsembleError("give at least one study")
    seen = set()
    for n in names:
        if n in seen:
            raise EnsembleError(f"study {n!r} is given twice")
        seen.add(n)
    opened = [Opened(n, *open_study(url, n, reroot=reroot)) for n in names]
    check_compatible(opened)
    return opened


def check_compatible(opened: Sequence[Opened]) -> None:
    """Raise a one-line :class:`EnsembleError` naming the first mismatch between studies."""
    first = opened[0]
    for other in opened[1:]:
        for name in ("target", "protocol", "seed", "dataset_sha"):
            a, b = getattr(first.spec, name), getattr(other.spec, name)
            if a != b:
                what = "dataset (files, labels or speakers)" if name == "dataset_sha" else name
                raise EnsembleError(
                    f"studies {first.name} and {other.name} differ in {what} ({a!r} vs {b!r}): an ensemble "
                    "needs one target, protocol, seed and dataset (the same test split)"
                )
        if other.data.hashes != first.data.hashes or not np.array_equal(other.data.test, first.data.test):
            raise EnsembleError(
                f"studies {first.name} and {other.name} have different test splits of the same data"
            )
        if other.spec.classes != first.spec.classes:
            raise EnsembleError(
                f"studies {first.name} and {other.name} differ in classes ({first.spec.classes} vs {other.spec.classes})"
            )


def space_module(spec: StudySpec) -> Any:
    from emotune.spaces import get

    return get(spec.space_path or spec.space)


def full_params(spec: StudySpec, trial_params: Mapping[str, Any]) -> dict[str, Any]:
    """The params dict the space built the trial from (its ``suggest`` on the trial's values).

    A searched feature set (the ``features`` parameter) is not the space's: see
    :meth:`StudySpec.for_trial`.
    """
    import optuna

    from emotune.search._study import FEATURES_PARAM
    from emotune.spaces._ssl_view import VIEW_PARAMS

    own = {k: v for k, v in trial_params.items() if k != FEATURES_PARAM}
    with warnings.catch_warnings():  # a value of an older study outside today's range still rebuilds
        warnings.filterwarnings("ignore", message="The value .* is out of the range", category=UserWarning)
        params = dict(space_module(spec).suggest(optuna.trial.FixedTrial(own)))
    # An ssl layer view (emotune.spaces._ssl_view) is the trial's, not the space's: kept with its params.
    return {**params, **{k: own[k] for k in VIEW_PARAMS if k in own}}


def top_candidates(url: str, opened: Opened, top_k: int, *, progress: bool = True) -> list[Candidate]:
    """The best ``top_k`` complete trials of a study with stored out-of-fold probabilities.

    A trial with the same parameters as a better one (samplers do propose a point again) is the same
    model: it is skipped, so the ``top_k`` are distinct.
    """
    import optuna

    from emotune.search._search import load_oof

    if top_k < 1:
        raise EnsembleError(f"--top-k {top_k} must be at least 1")
    trials = opened.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    trials = sorted((t for t in trials if t.value is not None), key=lambda t: (-t.value, t.number))
    n_train, n_classes = len(opened.data.train_index), len(opened.spec.classes)
    out: list[Candidate] = []
    taken: set[str] = set()
    for t in trials:
        if len(out) == top_k:
            break
        spec = opened.spec.for_trial(t.params)
        params = full_params(spec, t.params)
        same = json.dumps([spec.feature_set, params], sort_keys=True, default=str)
        if same in taken:  # the sampler proposed these parameters again: the same model, skip it
            continue
        oof = load_oof(url, opened.name, t.number)
        if oof is None or oof.shape != (n_train, n_classes):
            _say(
                f"study {opened.name} trial #{t.number}: no usable out-of-fold probabilities, skipped",
                progress,
            )
            continue
        taken.add(same)
        out.append(Candidate(opened.name, t.number, spec, params, float(t.value), oof))
    if not out:
        raise EnsembleError(
            f"study {opened.name} has no complete trial with stored out-of-fold probabilities "
            "(run `emotune search` on it first)"
        )
    return out


def assign_inputs(candidates: Sequence[Candidate]) -> dict[str, InputSpec]:
    """Give every candidate an input key; one key per (feature set, parameters, normalisation)."""
    inputs: dict[str, InputSpec] = {}
    for c in candidates:
        key = c.spec.feature_set + ("+speaker_norm" if c.spec.speaker_norm else "")
        known = inputs.get(key)
        if known is not None and known.feature_params != c.spec.feature_params:
            digest = hashlib.sha256(json.dumps(c.spec.feature_params, sort_keys=True).encode()).hexdigest()[
                :8
            ]
            key = f"{key}@{digest}"
        inputs.setdefault(
            key, InputSpec(key, c.spec.feature_set, dict(c.spec.feature_params), bool(c.spec.speaker_norm))
        )
        c.key = key
    return inputs


def load_inputs(
    opened: Sequence[Opened],
    candidates: Sequence[Candidate],
    inputs: Mapping[str, InputSpec],
    *,
    cache_dir: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Every input's feature matrix over all rows of the (shared) dataset, in study row order."""
    from emotune.search._data import load_arrays

    by_study = {o.name: o for o in opened}
    arrays: dict[str, np.ndarray] = {}
    for key in inputs:
        c = next(c for c in candidates if c.key == key)
        o = by_study[c.study]
        arrays[key] = load_arrays(c.spec, o.data, cache_dir=cache_dir)
    return arrays


# --- speaker normalisation statistics ----------------------------------------------------------


def training_stats(
    spec: StudySpec, data: StudyData, rows: np.ndarray, *, cache_dir: str | Path | None = None
) -> dict[str, list[float]]:
    """Per-column mean and std of the raw (unnormalised) features of the training rows.

    ``predict`` normalises a file with these when its speaker cannot be named or has fewer than
    five files in the call.
    """
    from emotune.search._data import load_arrays

    raw = load_arrays(dataclasses.replace(spec, speaker_norm=False), data, cache_dir=cache_dir)[rows]
    return pooled_stats(raw)


def pooled_stats(X: np.ndarray) -> dict[str, Any]:
    """Mean and std of every feature element over the rows, as :func:`speaker_normalize` computes them.

    ``X`` is ``(n, ...)``; each element of the trailing shape is one feature (for ``mfcc_seq``
    every coefficient x frame), so ``mean`` and ``std`` are flat lists with the trailing ``shape``.
    """
    X = np.asarray(X, dtype=np.float64)
    return {
        "shape": list(X.shape[1:]),
        "mean": X.mean(axis=0).ravel().tolist(),
        "std": X.std(axis=0).ravel().tolist(),
    }


# --- fitting and scoring -----------------------------------------------------------------------


def build_member(c: Candidate, n_classes: int) -> Any:
    """A fresh, unfitted estimator of a candidate."""
    from emotune.spaces._ssl_view import build_viewed

    return build_viewed(space_module(c.spec), c.params, seed=c.spec.seed, n_classes=n_classes)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class (class-code order)."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


@dataclass
class Fitted:
    """A voter fitted on training rows, with per-candidate and voter metrics."""

    voter: Any
    selection: Any
    rows: list[dict[str, Any]]
    confusion: np.ndarray | None
    test_proba: np.ndarray | None
    members: list[int] = field(default_factory=list)  # candidate indices the voter holds, in order
    choice: VoterChoice | None = None


def fit_and_score(
    candidates: Sequence[Candidate],
    arrays: Mapping[str, np.ndarray],
    labels: Sequence[str],
    classes: Sequence[str],
    train: np.ndarray,
    test: np.ndarray,
    *,
    metric: str,
    iterations: int = DEFAULT_ITERATIONS,
    refit_best_of_each_study: bool = True,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    voter_kind: str = "auto",
) -> Fitted:
    """Choose the voter on out-of-fold data, refit on ``train``, score on ``test`` (may be empty).

    ``candidates[i].oof`` rows must be the rows ``train`` indexes, in that order. With ``folds``
    (the studies' folds over those rows), greedy weights and a stacked voter are compared by
    cross-validation on the out-of-fold rows (:func:`~emotune.search.vote._stack.choose_voter`) unless
    ``voter_kind`` names one; without, the voter is greedy.
    """
    from emotune.search._objective import captured_warnings, summarize_warnings
    from emotune.search.vote._voter import greedy_selection

    say = say or (lambda m: _say(m, progress))
    split = _Split.of(arrays, labels, classes, train, test)
    sel = greedy_selection([c.oof for c in candidates], split.y_train, metric=metric, iterations=iterations)
    choice = _choose(candidates, split.y_train, folds, metric=metric, iterations=iterations, kind=voter_kind)
    voter, chosen = _unfitted_voter(candidates, sel, choice, classes, split.y_train, metric=metric, say=say)
    keys = sorted({candidates[i].key for i in chosen})
    t0 = time.perf_counter()
    say(f"refitting {len(chosen)} member(s) on {len(train)} training files ...")
    with captured_warnings() as caught:
        voter.fit(split.inputs(keys, train), np.asarray(labels)[train])
    say(f"refit in {time.perf_counter() - t0:.1f} s")
    if caught:
        say("library warnings while refitting: " + "; ".join(summarize_warnings(caught, most=2)))

    # Member probabilities on train/test: the voter's own members, plus each study's best if unchosen.
    fitted: dict[int, tuple[Any, str]] = {
        i: (est, candidates[i].key) for i, est in zip(chosen, voter.estimators_, strict=True)
    }
    if refit_best_of_each_study:
        fitted |= _refit_unchosen_bests(candidates, chosen, split, say)
    # A stacked voter has no member weights: its rows say 1.0 in the voter, 0.0 out (and in_voter).
    rows = [
        _member_row(i, c, fitted.get(i), split, weight=float(sel.weights[i]) if choice.kind == "greedy" else float(i in chosen))
        | {"in_voter": i in chosen}
        for i, c in enumerate(candidates)
    ]  # fmt: skip
    vrow, conf, test_proba = _voter_row(voter, keys, candidates, chosen, sel, choice, split)
    rows.append(vrow)
    return Fitted(voter, sel, rows, conf, test_proba, chosen, choice)


@dataclass
class _Split:
    """The rows an ensemble is fitted (``train``) and tested (``test``, may be empty) on."""

    arrays: Mapping[str, np.ndarray]
    train: np.ndarray
    test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @classmethod
    def of(
        cls,
        arrays: Mapping[str, np.ndarray],
        labels: Sequence[str],
        classes: Sequence[str],
        train: np.ndarray,
        test: np.ndarray,
    ) -> _Split:
        code = {c: i for i, c in enumerate(classes)}
        # A test label the training part lacks (possible in nested evaluation) is -1: never predicted.
        y_all = np.array([code.get(v, -1) for v in labels], dtype=np.int64)
        if (y_all[train] < 0).any():
            raise EnsembleError("a training label is missing from the class list")
        return cls(arrays, train, test, y_all[train], y_all[test], len(classes))

    def inputs(self, keys: Sequence[str], rows: np.ndarray) -> dict[str, np.ndarray]:
        """The voter's input: each feature input's matrix at ``rows``."""
        return {k: self.arrays[k][rows] for k in keys}


def _unfitted_voter(
    candidates: Sequence[Candidate],
    sel: Selection,
    choice: VoterChoice,
    classes: Sequence[str],
    y_train: np.ndarray,
    *,
    metric: str,
    say: Callable[[str], None],
) -> tuple[Any, list[int]]:
    """The chosen voter, its members not fitted yet, and the candidates it holds (indices, in order)."""
    from emotune.search.vote._voter import SoftVoter

    n_classes = len(classes)
    if choice.kind == "stacked":
        chosen = list(range(len(candidates)))
        say(
            f"stacked voter over {len(chosen)} members (meta-model C={choice.C:g}) chosen by cross-validation "
            f"on out-of-fold probabilities: " + ", ".join(f"{k} {v:.4f}" for k, v in choice.cv_scores.items())
        )
        members = [(candidates[i].name, build_member(candidates[i], n_classes)) for i in chosen]
        meta = fit_meta([c.oof for c in candidates], y_train, C=float(choice.C or 1.0), n_classes=n_classes)
        voter: SoftVoter = StackedVoter(
            members, meta=meta, inputs=[candidates[i].key for i in chosen], classes=list(classes)
        )
        return voter, chosen
    chosen = [i for i in range(len(candidates)) if sel.counts[i] > 0]
    say(
        "weights chosen on out-of-fold probabilities: "
        + ", ".join(f"{candidates[i].name}={sel.weights[i]:.2f}" for i in chosen)
        + f" (out-of-fold {metric} {sel.score:.4f}; best member {sel.member_scores[sel.best_member]:.4f})"
        + (
            f"; cross-validated: {', '.join(f'{k} {v:.4f}' for k, v in choice.cv_scores.items())}"
            if choice.cv_scores
            else ""
        )
    )
    voter = SoftVoter(
        [(candidates[i].name, build_member(candidates[i], n_classes)) for i in chosen],
        weights=[int(sel.counts[i]) for i in chosen],
        inputs=[candidates[i].key for i in chosen],
        classes=list(classes),
    )
    return voter, chosen


def _refit_unchosen_bests(
    candidates: Sequence[Candidate], chosen: Sequence[int], split: _Split, say: Callable[[str], None]
) -> dict[int, tuple[Any, str]]:
    """Each study's best candidate that the voter does not hold, fitted on the training rows (for the table)."""
    from emotune.search._objective import captured_warnings

    best_of: dict[str, int] = {}
    for i, c in enumerate(candidates):
        if c.study not in best_of or c.value > candidates[best_of[c.study]].value:
            best_of[c.study] = i
    fitted: dict[int, tuple[Any, str]] = {}
    for i in sorted(set(best_of.values()) - set(chosen)):
        c = candidates[i]
        say(f"refitting {c.name} (its study's best, not chosen) for the table ...")
        with captured_warnings():
            est = build_member(c, split.n_classes).fit(split.arrays[c.key][split.train], split.y_train)
        fitted[i] = (est, c.key)
    return fitted


def _member_row(
    i: int, c: Candidate, fitted: tuple[Any, str] | None, split: _Split, *, weight: float
) -> dict[str, Any]:
    """A candidate's row of the table: out-of-fold scores; train and test scores when it was fitted."""
    from emotune.search._objective import aligned_proba

    cv = scores(split.y_train, c.oof.argmax(axis=1))
    row: dict[str, Any] = {
        "member": c.name,
        "study": c.study,
        "trial": c.trial,
        "space": c.spec.space,
        "feature_set": c.spec.feature_set,
        "weight": weight,
        "cv_accuracy": cv["accuracy"],
        "cv_uar": cv["uar"],
        "train_accuracy": None,
        "test_accuracy": None,
        "test_uar": None,
    }
    if fitted is None:
        return row
    est, key = fitted
    X = split.arrays[key]
    row["train_accuracy"] = scores(
        split.y_train, aligned_proba(est, X[split.train], split.n_classes).argmax(1)
    )["accuracy"]
    if len(split.test):
        pred = aligned_proba(est, X[split.test], split.n_classes).argmax(1)
        m = scores(split.y_test, pred)
        row["test_accuracy"], row["test_uar"] = m["accuracy"], m["uar"]
        known = split.y_test >= 0
        row["test_confusion"] = confusion(split.y_test[known], pred[known], split.n_classes)
    return row


def _voter_row(
    voter: Any,
    keys: Sequence[str],
    candidates: Sequence[Candidate],
    chosen: Sequence[int],
    sel: Selection,
    choice: VoterChoice,
    split: _Split,
) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    """The voter's row of the table, its test confusion matrix and test probabilities (None without test rows)."""
    from emotune.search.vote._voter import blend

    if choice.kind == "stacked" and choice.cv_proba is not None:
        cv_voter = scores(split.y_train, choice.cv_proba.argmax(axis=1))
    else:
        cv_voter = scores(split.y_train, blend([c.oof for c in candidates], sel.weights).argmax(axis=1))
    train_pred = voter.predict_proba(split.inputs(keys, split.train)).argmax(axis=1)
    vrow: dict[str, Any] = {
        "member": "voter",
        "voter_kind": choice.kind,
        "voter_cv": choice.cv_scores,
        "study": None,
        "trial": None,
        "space": "+".join(sorted({candidates[i].spec.space for i in chosen})),
        "feature_set": "+".join(sorted({candidates[i].spec.feature_set for i in chosen})),
        "weight": 1.0,
        "cv_accuracy": cv_voter["accuracy"],
        "cv_uar": cv_voter["uar"],
        "train_accuracy": scores(split.y_train, train_pred)["accuracy"],
        "test_accuracy": None,
        "test_uar": None,
    }
    if not len(split.test):
        return vrow, None, None
    test_proba = voter.predict_proba(split.inputs(keys, split.test))
    pred = test_proba.argmax(axis=1)
    m = scores(split.y_test, pred)
    vrow["test_accuracy"], vrow["test_uar"] = m["accuracy"], m["uar"]
    known = split.y_test >= 0
    conf = confusion(split.y_test[known], pred[known], split.n_classes)
    vrow["test_confusion"] = conf
    return vrow, conf, test_proba


def _choose(
    candidates: Sequence[Candidate],
    y_train: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None,
    *,
    metric: str,
    iterations: int,
    kind: str,
) -> VoterChoice:
    """The voter kind; greedy without folds (nothing to cross-validate on) or with one candidate."""
    if kind not in VOTERS:
        raise EnsembleError(f"--voter {kind!r} is not one of {', '.join(VOTERS)}")
    if not folds or len(candidates) < 2 or kind == "greedy":
        return VoterChoice("greedy", None)
    oof = [c.oof for c in candidates]
    return choose_voter(oof, y_train, folds, metric=metric, iterations=iterations, voter=kind)


# --- the command -------------------------------------------------------------------------------


def build_ensemble(
    url: str,
    studies: Sequence[str],
    out: str | Path | None,
    *,
    top_k: int = DEFAULT_TOP_K,
    metric: str | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    reroot: str | Path | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    voter_kind: str = "auto",
) -> EnsembleResult:
    """Ensemble the best trials of ``studies`` and write the model directory ``out``.

    Args:
        url: Storage URL (psycopg2 SQLAlchemy URL, see ``_storage.resolve_url``).
        studies: Study names; they must share target, protocol, seed and dataset.
        out: The model directory to write (``None``: build and report only).
        top_k: Best complete trials taken from each study.
        metric: What the weights maximise (default: the first study's metric).
        iterations: Greedy selection steps.
        reroot: Where the studies' data lives on this machine, if it moved.
        cache_dir: Feature cache (default ``$EMOTUNE_HOME/cache``).
        force: Replace a non-empty ``out``.
        progress: Progress lines on stderr.
        voter_kind: ``auto`` (greedy weights or stacking, chosen by cross-validation on the
            out-of-fold probabilities over the first study's folds), ``greedy`` or ``stacked``.
    """
    from emotune.search._export import library_versions
    from emotune.search.vote import _modeldir

    if out is not None:
        _modeldir.check_target(out, force=force)  # fail before any work
    t0 = time.perf_counter()
    opened = open_studies(url, studies, reroot=reroot)
    first = opened[0]
    metric = metric or first.spec.metric
    candidates = [c for o in opened for c in top_candidates(url, o, top_k, progress=progress)]
    inputs = assign_inputs(candidates)
    _say(
        f"{len(candidates)} candidate trials from {len(opened)} studies; loading features "
        f"({', '.join(inputs)}) from the cache ...",
        progress,
    )
    arrays = load_inputs(opened, candidates, inputs, cache_dir=cache_dir)
    train, test = first.data.train_index, first.data.test_index
    classes = list(first.spec.classes)
    fit = fit_and_score(
        candidates,
        arrays,
        first.data.labels,
        classes,
        train,
        test,
        metric=metric,
        iterations=iterations,
        progress=progress,
        folds=first.data.folds,
        voter_kind=voter_kind,
    )
    _add_training_stats(opened, candidates, inputs, fit.members, train, cache_dir=cache_dir)
    manifest = make_manifest(
        opened, candidates, inputs, fit, metric=metric, iterations=iterations, versions=library_versions()
    )
    result = EnsembleResult(
        fit.voter,
        manifest,
        fit.rows,
        fit.confusion,
        classes,
        selection=fit.selection,
        timings={"total_s": time.perf_counter() - t0},
    )
    if out is not None:
        result.out = _write_model_dir(
            url, out, fit, manifest, classes, n_test=len(test), force=force, progress=progress
        )
        result.manifest = json.loads((result.out / _modeldir.MANIFEST).read_text())  # with files + checksum
    return result


def _add_training_stats(
    opened: Sequence[Opened],
    candidates: Sequence[Candidate],
    inputs: Mapping[str, Any],
    chosen: Sequence[int],
    train: np.ndarray,
    *,
    cache_dir: str | Path | None,
) -> None:
    """Give each speaker-normalised input the voter uses its training statistics (for predict)."""
    for key in sorted({candidates[i].key for i in chosen}):
        spec = inputs[key]
        if spec.speaker_norm:
            c = next(candidates[i] for i in chosen if candidates[i].key == key)
            o = next(o for o in opened if o.name == c.study)
            spec.training_stats = training_stats(c.spec, o.data, train, cache_dir=cache_dir)


def _write_model_dir(
    url: str,
    out: str | Path,
    fit: Fitted,
    manifest: dict[str, Any],
    classes: Sequence[str],
    *,
    n_test: int,
    force: bool,
    progress: bool,
) -> Path:
    """Write the model directory: voter, user space copies, confusion matrix, report page, manifest."""
    from emotune.search.viz.report import REPORT_FILE, ensemble_page
    from emotune.search.vote import _modeldir

    files = {_modeldir.VOTER_FILE: voter_bytes(fit.voter), **space_files(manifest)}
    if fit.confusion is not None:
        files[_modeldir.CONFUSION_PNG] = confusion_png(
            fit.confusion, list(classes), title=_cm_title(fit.rows[-1], n_test)
        )
    _say(f"drawing {REPORT_FILE} ...", progress)
    files[REPORT_FILE] = ensemble_page(url, manifest).encode()
    return Path(_modeldir.write(out, files, manifest, force=force))


def space_files(manifest: dict[str, Any]) -> dict[str, bytes]:
    """Copies of the members' user space modules, for the model directory (checksummed like the rest).

    Each member with a ``space_path`` gets ``space_file`` (the copy's name in the directory) and
    ``space_module`` (the module name its classes were pickled under): predict imports the copy,
    never a file outside the directory.
    """
    from emotune.spaces import get

    files: dict[str, bytes] = {}
    for member in manifest["members"]:
        if not member.get("space_path"):
            continue
        module = get(member["space_path"])
        name = f"space-{module.__name__}.py"
        files[name] = Path(member["space_path"]).read_bytes()
        member["space_file"] = name
        member["space_module"] = module.__name__
    return files


def voter_bytes(voter: Any) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(voter, buf, compress=3)
    return buf.getvalue()


def make_manifest(
    opened: Sequence[Opened],
    candidates: Sequence[Candidate],
    inputs: Mapping[str, InputSpec],
    fit: Fitted,
    *,
    metric: str,
    iterations: int,
    versions: Mapping[str, str],
) -> dict[str, Any]:
    """The model directory's manifest (everything but ``files``, ``format`` and ``checksum``)."""
    from emotune.search._text import json_clean

    first = opened[0]
    sel = fit.selection
    chosen = fit.members
    stacked = fit.choice is not None and fit.choice.kind == "stacked"
    used = {candidates[i].key for i in chosen}
    members = []
    for i in chosen:
        c = candidates[i]
        members.append(
            {
                "name": c.name,
                "study": c.study,
                "trial": c.trial,
                "space": c.spec.space,
                "space_path": c.spec.space_path,
                "params": c.params,
                "weight": None if stacked else float(sel.weights[i]),
                "count": None if stacked else int(sel.counts[i]),
                "input": c.key,
                "feature_set": c.spec.feature_set,
                "feature_params": c.spec.feature_params,
                "speaker_norm": bool(c.spec.speaker_norm),
                "cv_value": c.value,
            }
        )
    doc = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target": first.spec.target,
        "classes": list(first.spec.classes),
        "protocol": first.spec.protocol,
        "seed": first.spec.seed,
        "metric": metric,
        "dataset_sha": first.spec.dataset_sha,
        "roots": first.spec.roots,
        "n_train": int(len(first.data.train_index)),
        "n_test": int(len(first.data.test_index)),
        "test_speakers": sorted({first.data.rows[i]["speaker"] for i in first.data.test_index}),
        "studies": [o.name for o in opened],
        "speaker_norm": any(inputs[k].speaker_norm for k in used),
        "inputs": {k: dataclasses.asdict(v) for k, v in inputs.items() if k in used},
        "members": members,
        "voter": {
            "kind": fit.choice.kind if fit.choice else "greedy",
            "meta_C": fit.choice.C if fit.choice else None,
            "cv_scores": fit.choice.cv_scores if fit.choice else {},
            "how": "chosen by cross-validation over the studies' folds on out-of-fold probabilities"
            if fit.choice and fit.choice.cv_scores
            else "greedy weights (nothing to cross-validate the choice on)",
        },
        "selection": {
            "method": "greedy ensemble selection with replacement (Caruana et al. 2004) on out-of-fold probabilities",
            "iterations": iterations,
            "chosen_step": sel.chosen_step,
            "oof_score": sel.score,
            "best_member_oof_score": sel.member_scores[sel.best_member],
            "candidates": [
                {"name": c.name, "oof_score": s, "count": int(n)}
                for c, s, n in zip(candidates, sel.member_scores, sel.counts, strict=True)
            ],
        },
        "metrics": {"rows": fit.rows},
        "confusion_matrix": None
        if fit.confusion is None
        else {
            "rows": "true class",
            "columns": "predicted class",
            "labels": list(first.spec.classes),
            "counts": fit.confusion,
        },
        "versions": dict(versions),
    }
    return json_clean(doc)
