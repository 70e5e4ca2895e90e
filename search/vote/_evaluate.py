"""Nested, speaker-held-out evaluation: the number a careful paper reports.

For each outer fold (``actor``: a group of speakers, both genders where possible; ``random``: a
stratified fold of files), the searches run on the other speakers only, each in its own temporary
study whose dataset is the outer-training part (inner loop: cross-validation grouped by speaker,
no test split); the ensemble's weights come from those studies' out-of-fold probabilities, its
members are refit on the outer-training part, and everything is tested once on the held-out
speakers. Nothing the held-out speakers' labels say can reach a choice: not the trials, not the
weights, not the class list (a held-out label the training part lacks counts as an error).
Speaker normalisation (``speaker_norm``) z-scores each speaker with its own unlabelled files, the
held-out ones included, as ``predict`` does on new speakers.

The temporary studies are deleted when their fold is done (also on errors and Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotune.features import EmotuneError
from emotune.search.vote._defaults import (
    DEFAULT_INNER_FOLDS,
    DEFAULT_OUTER_FOLDS,
    DEFAULT_SPACES,
    DEFAULT_TIMEOUT,
    DEFAULT_TOP_K,
    DEFAULT_TRIALS,
    DEFAULT_WORKERS,
)


class EvaluateError(EmotuneError):
    """Data or settings a nested evaluation cannot run on."""


@dataclass
class FoldResult:
    fold: int
    test_speakers: list[str]
    n_train: int
    n_test: int
    rows: list[dict[str, Any]]  # per study best member + voter: name, space, test_accuracy, test_uar, ...
    trials: dict[str, dict[str, int]]  # space -> {"complete", "pruned", "fail"}
    seconds: float


@dataclass
class EvaluateResult:
    settings: dict[str, Any]
    folds: list[FoldResult] = field(default_factory=list)

    def summary(self) -> list[dict[str, Any]]:
        """Mean and std over folds of test accuracy and UAR, per space (its best trial) and the voter,
        for each normalisation the evaluation ran (``speaker_norm``: true or false)."""
        keys: list[tuple[str, bool]] = []
        for f in self.folds:
            for r in f.rows:
                if (r["model"], r["speaker_norm"]) not in keys:
                    keys.append((r["model"], r["speaker_norm"]))
        keys.sort(key=lambda k: k[1])  # plain first, then normalised; models in order of appearance
        out = []
        for name, sn in keys:
            rows = [r for f in self.folds for r in f.rows if r["model"] == name and r["speaker_norm"] == sn]
            acc = [r["test_accuracy"] for r in rows]
            uar = [r["test_uar"] for r in rows]
            row: dict[str, Any] = {
                "model": name,
                "speaker_norm": sn,
                "folds": len(acc),
                "accuracy_mean": float(np.mean(acc)),
                "accuracy_std": float(np.std(acc)),
                "uar_mean": float(np.mean(uar)),
                "uar_std": float(np.std(uar)),
            }
            if name == "voter":
                row["voter_kinds"] = sorted({r["voter_kind"] for r in rows})
            out.append(row)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "summary": self.summary(),
            "folds": [dataclasses.asdict(f) for f in self.folds],
        }


def _say(message: str, progress: bool) -> None:
    if progress:
        print(f"emotune: {message}", file=sys.stderr, flush=True)


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"outer:{seed}:{key}".encode()).hexdigest()


def outer_folds(
    labels: Sequence[str],
    groups: Sequence[str],
    genders: Sequence[str | None],
    hashes: Sequence[str],
    *,
    protocol: str,
    k: int,
    seed: int,
) -> list[np.ndarray]:
    """Test-row indices of each outer fold; a pure function of the data and ``seed``.

    ``actor``: speakers in seeded order, one gender after the other, dealt round-robin into ``k``
    folds, so each fold holds out whole speakers, and both genders whenever there are at least ``k``
    speakers of each.
    ``random``: stratified K-fold over files (rows ordered by content hash first).
    Byte-identical files share a fold: speakers that share one are one speaker, copies one file.
    """
    from emotune.search._study import duplicate_count, linked_groups

    n = len(labels)
    if protocol == "actor":
        groups = linked_groups(groups, hashes)
        gender_of: dict[str, str] = {}
        for g, sex in zip(groups, genders, strict=True):
            gender_of.setdefault(g, str(sex))
        by_gender: dict[str, list[str]] = {}
        for s in sorted(gender_of, key=lambda s: _rank(seed, s)):
            by_gender.setdefault(gender_of[s], []).append(s)
        # One gender after the other, dealt round-robin: each gender spreads over all folds.
        order = [s for g in sorted(by_gender) for s in by_gender[g]]
        fold_of = {s: i % k for i, s in enumerate(order)}
        row_fold = np.array([fold_of[s] for s in groups])
        return [np.flatnonzero(row_fold == f) for f in range(k)]
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    order_idx = np.array(sorted(range(n), key=lambda i: hashes[i]))
    y = np.asarray(labels)[order_idx]
    if duplicate_count(hashes):
        h = [hashes[i] for i in order_idx]
        units = {c: i for i, c in enumerate(sorted(set(h)))}
        grouped = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [np.sort(order_idx[te]) for _, te in grouped.split(np.zeros(n), y, [units[c] for c in h])]
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [np.sort(order_idx[te]) for _, te in cv.split(np.zeros(n), y)]


def evaluate(
    data: Sequence[str | Path],
    spaces: Sequence[str] = DEFAULT_SPACES,
    *,
    url: str,
    outer: int = DEFAULT_OUTER_FOLDS,
    inner: int = DEFAULT_INNER_FOLDS,
    trials: int = DEFAULT_TRIALS,
    timeout: float | None = DEFAULT_TIMEOUT,
    workers: int = DEFAULT_WORKERS,
    top_k: int = DEFAULT_TOP_K,
    target: str = "emotion",
    protocol: str = "actor",
    metric: str = "uar",
    seed: int = 0,
    speaker_norm: bool | str = "both",
    features: str | None = None,
    voter: str = "auto",
    corpus: str | None = None,
    labels: str | None = None,
    cache_dir: str | Path | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    folds_file: str | Path | None = None,
) -> EvaluateResult:
    """Run a nested evaluation and return per-fold and summary scores.

    Args:
        data: Corpus folders.
        spaces: Space names (or .py paths) searched in every outer fold.
        url: Storage URL for the temporary studies.
        outer: Outer folds (capped at the number of speakers, or of files per class for ``random``).
        inner: Inner cross-validation folds (grouped by speaker under ``actor``).
        trials: Finished trials per search.
        timeout: Seconds per search after which no new trial starts (``None``: no limit).
        workers: Ray workers per search.
        top_k: Best trials of each study that the ensemble may use.
        speaker_norm: ``True`` (normalised only), ``False`` (plain only) or ``"both"`` (each outer
            fold is searched and tested both ways, on the same folds).
        features: ``--features`` of every search (None: each space's default set).
        voter: ``auto`` (greedy or stacked, chosen on out-of-fold data), ``greedy`` or ``stacked``.
        target, protocol, metric, seed, corpus, labels: as for ``emotune search``.
        cache_dir, ray_address, num_cpus: feature cache and Ray settings.
        progress: Progress on stderr.
        folds_file: A ``speaker,fold`` CSV giving the outer folds instead of ``outer``
            (:mod:`emotune.search.vote._folds`).
    """
    from emotune.search.vote._stack import VOTERS

    t_start = time.perf_counter()
    if voter not in VOTERS:
        raise EvaluateError(f"--voter {voter!r} is not one of {', '.join(VOTERS)}")
    conditions = _conditions(speaker_norm)
    plan = _plan(data, spaces, features, target=target, protocol=protocol, outer=outer, seed=seed,
                 corpus=corpus, labels=labels, cache_dir=cache_dir, ray_address=ray_address,
                 num_cpus=num_cpus, progress=progress, folds_file=folds_file)  # fmt: skip
    settings = _settings(
        plan, conditions, target=target, protocol=protocol, metric=metric, seed=seed, inner=inner,
        trials=trials, timeout=timeout, workers=workers, top_k=top_k, voter=voter,
    )  # fmt: skip
    _announce(plan, conditions, protocol=protocol, metric=metric, inner=inner, trials=trials, timeout=timeout,
              workers=workers, top_k=top_k, voter=voter, progress=progress)  # fmt: skip
    arrays = {
        (name, sn): plan.arrays(name, sn)
        for m, sets in zip(plan.modules, plan.sets, strict=True)
        for name in sets
        for sn in conditions
    }
    result = EvaluateResult(settings)
    run_id = uuid.uuid4().hex[:8]
    opts: dict[str, Any] = {"trials": trials, "timeout": timeout, "workers": workers, "top_k": top_k, "metric": metric,
            "inner": inner, "voter": voter, "ray_address": ray_address, "num_cpus": num_cpus,
            "progress": progress}  # fmt: skip
    for f, test_idx in enumerate(plan.tests):
        result.folds.append(_outer_fold(plan, url, f, test_idx, arrays, conditions, run_id, opts))
    result.settings["seconds"] = round(time.perf_counter() - t_start, 1)
    return result


def _settings(
    plan: _Plan,
    conditions: list[bool],
    *,
    target: str,
    protocol: str,
    metric: str,
    seed: int,
    inner: int,
    trials: int,
    timeout: float | None,
    workers: int,
    top_k: int,
    voter: str,
) -> dict[str, Any]:
    """The evaluation's settings, as its result reports them."""
    k = len(plan.tests)
    return {
        "data": plan.roots,
        "files": len(plan.rows),
        "speakers": len(set(plan.groups)),
        "spaces": [m.NAME for m in plan.modules],
        "feature_sets": {m.NAME: sets for m, sets in zip(plan.modules, plan.sets, strict=True)},
        "target": target,
        "protocol": protocol,
        "metric": metric,
        "seed": seed,
        "outer_folds": k,
        "inner_folds": inner,
        "trials": trials,
        "timeout_s": timeout,
        "workers": workers,
        "top_k": top_k,
        "voter": voter,
        "speaker_norm": conditions[0] if len(conditions) == 1 else "both",
    }


def _announce(
    plan: _Plan,
    conditions: list[bool],
    *,
    protocol: str,
    metric: str,
    inner: int,
    trials: int,
    timeout: float | None,
    workers: int,
    top_k: int,
    voter: str,
    progress: bool,
) -> None:
    """Say on stderr what the evaluation is about to run."""
    k = len(plan.tests)
    _say(
        f"nested evaluation: {k} outer folds ({'held-out speakers' if protocol == 'actor' else 'stratified files'}) x "
        f"spaces {', '.join(m.NAME for m in plan.modules)}: up to {trials} trials per search"
        + (f" (or {timeout:g} s)" if timeout else "")
        + f", {workers} workers, inner {inner}-fold CV ({'grouped by speaker' if protocol == 'actor' else 'stratified'}), "
        f"voter ({voter}) over the top {top_k} of each, metric {metric}",
        progress,
    )
    if True in conditions:
        _say(
            "speaker normalisation z-scores each speaker's features with that speaker's own unlabelled files, "
            "test speakers included (it needs several recordings of every new speaker at prediction time)",
            progress,
        )


def _outer_fold(
    plan: _Plan,
    url: str,
    f: int,
    test_idx: np.ndarray,
    arrays: dict[tuple[str, bool], np.ndarray],
    conditions: list[bool],
    run_id: str,
    opts: dict[str, Any],
) -> FoldResult:
    """Outer fold ``f``: search, ensemble and test under every normalisation condition."""
    k, protocol, progress = len(plan.tests), plan.protocol, opts["progress"]
    t0 = time.perf_counter()
    train_idx = np.setdiff1d(np.arange(len(plan.rows)), test_idx)
    held = sorted({plan.groups[i] for i in test_idx})
    _say(
        f"outer fold {f + 1}/{k}: {len(train_idx)} training files, {len(test_idx)} test files"
        + (f" (speakers {', '.join(held)})" if protocol == "actor" else ""),
        progress,
    )
    rows_out: list[dict[str, Any]] = []
    trial_counts: dict[str, dict[str, int]] = {}
    for sn in conditions:
        name = f"evaluate-{run_id}-f{f + 1}" + ("-sn" if sn else "")
        r, counts = _run_fold(plan, url, name, train_idx, test_idx, arrays, sn, **opts)
        rows_out += r
        trial_counts.update({f"{s}{'+sn' if sn else ''}": c for s, c in counts.items()})
    fr = FoldResult(f + 1, held if protocol == "actor" else [], len(train_idx), len(test_idx), rows_out,
                    trial_counts, time.perf_counter() - t0)  # fmt: skip
    done = ", ".join(
        f"{'normalised' if r['speaker_norm'] else 'plain'} UAR {r['test_uar']:.3f}"
        for r in rows_out
        if r["model"] == "voter"
    )
    _say(f"outer fold {f + 1}/{k} done in {fr.seconds:.0f} s: voter {done}", progress)
    return fr


def _conditions(speaker_norm: bool | str) -> list[bool]:
    if speaker_norm == "both":
        return [False, True]
    if isinstance(speaker_norm, bool):
        return [speaker_norm]
    raise EvaluateError(f"speaker_norm must be True, False or 'both', got {speaker_norm!r}")


@dataclass
class _Plan:
    """The evaluation's data: rows, labels, groups, the outer folds, the spaces and their sets."""

    rows: list[Any]
    hashes: list[str]
    labels: list[str]
    groups: list[str]
    tests: list[np.ndarray]
    modules: list[Any]
    sets: list[list[str]]  # per space: its feature sets (one pinned, or several searched)
    refs: list[str]
    roots: list[str]
    target: str
    protocol: str
    seed: int
    cache_dir: str | Path | None

    def spec(self, i: int, sn: bool, inner: int, metric: str) -> Any:
        from emotune.features import default_params
        from emotune.search._study import StudySpec

        m, sets, ref = self.modules[i], self.sets[i], self.refs[i]
        choices = {name: default_params(name) for name in sets}
        return StudySpec(
            space=m.NAME,
            feature_set=sets[0],
            feature_params=choices[sets[0]],
            target=self.target,
            protocol=self.protocol,
            metric=metric,
            seed=self.seed,
            folds=inner,
            speaker_norm=sn,
            roots=self.roots,
            space_path=str(Path(ref).resolve()) if ref.endswith(".py") else None,
            feature_choices=choices if len(choices) > 1 else {},
        )

    def study_data(self, idx: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> Any:
        from emotune.search._study import StudyData

        return StudyData(
            [dataclasses.asdict(self.rows[i]) for i in idx],
            [self.hashes[i] for i in idx],
            [self.labels[i] for i in idx],
            np.zeros(len(idx), dtype=bool),
            folds,
        )

    def arrays(self, feature_set: str, sn: bool) -> np.ndarray:
        """One feature set over every row, once (slices feed the folds)."""
        from emotune.features import default_params
        from emotune.search._data import feature_matrix

        return feature_matrix(self.rows, self.hashes, default_params(feature_set), target=self.target,
                              speaker_norm=sn, cache_dir=self.cache_dir)  # fmt: skip


def _plan(
    data: Sequence[str | Path],
    spaces: Sequence[str],
    features: str | None,
    *,
    target: str,
    protocol: str,
    outer: int,
    seed: int,
    corpus: str | None,
    labels: str | None,
    cache_dir: str | Path | None,
    ray_address: str | None,
    num_cpus: int | None,
    progress: bool,
    folds_file: str | Path | None = None,
) -> _Plan:
    """Check the settings, scan and label the data, build its features, make the outer folds."""
    from emotune.features import default_params, label_of
    from emotune.search._data import build_features, check_labels, feature_sets, labelled_rows, load_space
    from emotune.search._study import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise EvaluateError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if outer < 2:
        raise EvaluateError(f"--outer-folds {outer} must be at least 2")
    if not spaces:
        raise EvaluateError("--spaces: give at least one space")
    modules = [load_space(s) for s in spaces]
    if len({m.NAME for m in modules}) != len(modules):
        raise EvaluateError(f"--spaces {','.join(spaces)}: a space is given twice")
    sets = [feature_sets(m, features) for m in modules]
    for d in data:
        if not Path(d).exists():
            raise EvaluateError(f"{d}: no such file or folder")
    params = {name: default_params(name) for s in sets for name in s}

    rows = labelled_rows(data, target=target, corpus=corpus, labels=labels)
    check_labels(rows, target)  # corpus_native on mixed corpora, one class: before anything is built
    _say(f"{len(rows)} labelled files; building features ({', '.join(params)}) ...", progress)
    rows, hashes = build_features(rows, list(params.values()), cache_dir=cache_dir, ray_address=ray_address,
                                  num_cpus=num_cpus, progress=progress)  # fmt: skip
    order = sorted(range(len(rows)), key=lambda i: (hashes[i], rows[i].path))  # independent of scan order
    rows, hashes = [rows[i] for i in order], [hashes[i] for i in order]
    labels_ = [str(label_of(r, target)) for r in rows]
    groups = [r.speaker for r in rows]
    n_speakers = len(set(groups))
    if protocol == "actor":
        k = min(outer, n_speakers)
        if n_speakers < 3:
            raise EvaluateError(
                f"the actor protocol needs at least 3 speakers (2 to cross-validate, 1 to test); the data has "
                f"{n_speakers}: use --protocol random"
            )
    else:
        k = min(outer, min(labels_.count(c) for c in set(labels_)))
        if k < 2:
            raise EvaluateError("a class has fewer than 2 files: cannot make outer folds")
    if folds_file is not None:  # a published protocol's folds (emotune.search.vote._folds)
        from emotune.search.vote._folds import folds_from_file

        tests = folds_from_file(folds_file, groups)
        _say(f"{len(tests)} outer folds from {folds_file}", progress)
    else:
        if k < outer:
            _say(f"using {k} outer folds instead of {outer} (too few speakers or files per class)", progress)
        tests = outer_folds(
            labels_, groups, [r.gender for r in rows], hashes, protocol=protocol, k=k, seed=seed
        )
    roots = [str(Path(d).resolve()) for d in data]
    return _Plan(rows, hashes, labels_, groups, tests, modules, sets, list(spaces), roots, target, protocol,
                 seed, cache_dir)  # fmt: skip


def _run_fold(
    plan: _Plan,
    url: str,
    prefix: str,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    arrays: dict[tuple[str, bool], np.ndarray],
    sn: bool,
    *,
    trials: int,
    timeout: float | None,
    workers: int,
    top_k: int,
    metric: str,
    inner: int,
    voter: str,
    ray_address: str | None,
    num_cpus: int | None,
    progress: bool,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    """One outer fold under one normalisation: search every space on the training rows, ensemble, test."""
    from emotune.search import _search
    from emotune.search._data import class_order, trial_data_from
    from emotune.search._study import dataset_digest, make_folds

    tr_rows = [plan.rows[i] for i in train_idx]
    tr_labels = [plan.labels[i] for i in train_idx]
    tr_groups = [plan.groups[i] for i in train_idx]
    classes = sorted(set(tr_labels), key=class_order(plan.target, tr_rows))
    folds = make_folds(tr_labels, tr_groups, protocol=plan.protocol, folds=inner, seed=plan.seed, quiet=True,
                       hashes=[plan.hashes[i] for i in train_idx])  # fmt: skip
    sdata = plan.study_data(train_idx, folds)
    digest = dataset_digest(sdata.hashes, sdata.labels, tr_groups)
    names: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    try:
        for i, m in enumerate(plan.modules):
            name = f"{prefix}-{m.NAME}"
            spec = dataclasses.replace(plan.spec(i, sn, inner, metric), classes=classes, dataset_sha=digest)
            names.append(name)
            _search.create_or_check(url, name, spec, sdata)
            tdata = trial_data_from(spec, sdata, {s: arrays[(s, sn)][train_idx] for s in plan.sets[i]})
            prep = _search.Prepared(name, url, m, spec, sdata, tdata, True)
            summary = _search.run(prep, n_trials=trials, workers=workers, ray_address=ray_address,
                                  num_cpus=num_cpus, timeout=timeout, progress=progress)  # fmt: skip
            if summary.get("interrupted"):
                raise KeyboardInterrupt
            counts[m.NAME] = {s: int(summary[s]) for s in ("complete", "pruned", "fail")}
        by_set = {s: arrays[(s, sn)] for sets in plan.sets for s in sets}
        rows_out = _ensemble_fold(url, names, by_set, plan.labels, classes, train_idx, test_idx, metric=metric,
                                  top_k=top_k, progress=progress, folds=folds, voter=voter)  # fmt: skip
    finally:
        _delete_studies(url, names)
    return [{**r, "speaker_norm": sn} for r in rows_out], counts


def _ensemble_fold(
    url: str,
    names: Sequence[str],
    arrays_by_set: dict[str, np.ndarray],
    labels: Sequence[str],
    classes: Sequence[str],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    metric: str,
    top_k: int,
    progress: bool,
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    voter: str = "auto",
) -> list[dict[str, Any]]:
    """The voter chosen on the fold's studies' out-of-fold data, refit on its training rows, tested once."""
    from emotune.search.vote._ensemble import (
        EnsembleError,
        assign_inputs,
        fit_and_score,
        open_studies,
        top_candidates,
    )

    opened = open_studies(url, names)
    candidates = []
    for o in opened:
        try:
            candidates += top_candidates(url, o, top_k, progress=progress)
        except EnsembleError as exc:  # e.g. every trial pruned or failed within the budget
            _say(f"{o.spec.space} is left out of this fold: {exc}", progress)
    if not candidates:
        raise EvaluateError("no search of this fold finished a trial: raise --trials or --timeout")
    inputs = assign_inputs(candidates)
    arrays = {key: arrays_by_set[spec.feature_set] for key, spec in inputs.items()}
    fit = fit_and_score(
        candidates,
        arrays,
        labels,
        classes,
        train_idx,
        test_idx,
        metric=metric,
        progress=progress,
        folds=folds,
        voter_kind=voter,
    )
    out = []
    best_of: dict[str, dict[str, Any]] = {}
    for r in fit.rows[:-1]:
        if r["test_accuracy"] is not None and r["study"] not in best_of:
            best_of[r["study"]] = r  # candidates come best first within a study
    for r in best_of.values():
        out.append({"model": r["space"], "member": r["member"], **_scores(r)})
    v = fit.rows[-1]
    out.append(
        {
            "model": "voter",
            "member": v["space"],
            "voter_kind": v["voter_kind"],
            "weights": _weights(fit.rows[:-1]),
            **_scores(v),
        }
    )
    for r in out:  # the confusion matrices' row and column names
        r["classes"] = list(classes)
    return out


def _scores(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("train_accuracy", "cv_accuracy", "cv_uar", "test_accuracy", "test_uar")
    return {**{k: r[k] for k in keys}, "test_confusion": r.get("test_confusion")}


def _weights(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {r["member"]: r["weight"] for r in rows if r["weight"] > 0}


def _delete_studies(url: str, names: Sequence[str]) -> None:
    from emotune.search._export import delete_study

    for name in names:
        try:
            delete_study(url, name)
        except EmotuneError:
            pass  # never created


def _norm_label(sn: bool) -> str:
    return "speaker-normalised" if sn else "plain"


def format_summary(result: EvaluateResult) -> str:
    """Per fold (voters) and the mean +- std table, plain and speaker-normalised side by side."""
    from emotune.search._text import table

    fold_rows = []
    for f in result.folds:
        for v in (r for r in f.rows if r["model"] == "voter"):
            sn = v["speaker_norm"]
            fold_rows.append(
                [
                    f.fold,
                    ", ".join(f.test_speakers) or "-",
                    f.n_train,
                    f.n_test,
                    _norm_label(sn),
                    v.get("voter_kind", "greedy"),
                    f"{v['test_accuracy']:.3f}",
                    f"{v['test_uar']:.3f}",
                    "; ".join(
                        f"{s.removesuffix('+sn')}: {c['complete']}+{c['pruned']}p"
                        for s, c in f.trials.items()
                        if s.endswith("+sn") == sn
                    ),
                    f"{f.seconds:.0f}",
                ]
            )
    head = ["fold", "test speakers", "train", "test", "features", "voter", "voter acc", "voter UAR"]
    lines = [table([*head, "trials (complete+pruned)", "s"], fold_rows), ""]
    summary = result.summary()
    lines.append(
        table(
            ["model", "features", "folds", "test accuracy", "test UAR"],
            [
                [
                    s["model"] + (f" ({'/'.join(s['voter_kinds'])})" if s["model"] == "voter" else ""),
                    _norm_label(s["speaker_norm"]),
                    s["folds"],
                    f"{s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}",
                    f"{s['uar_mean']:.3f} ± {s['uar_std']:.3f}",
                ]
                for s in summary
            ],
        )
    )
    st = result.settings
    lines.append(
        f"\n{st['outer_folds']} outer folds ({st['protocol']}), {st['files']} files of {st['speakers']} speakers, "
        f"target {st['target']}; per fold and space up to {st['trials']} trials"
        + (f" / {st['timeout_s']:g} s" if st["timeout_s"] else "")
        + f", inner {st['inner_folds']}-fold CV; models = each space's best trial refit; voter = greedy weights "
        f"or a stacked logistic regression, chosen on inner out-of-fold {st['metric']}; "
        f"{st.get('seconds', 0):.0f} s in all"
    )
    if any(s["speaker_norm"] for s in summary):
        lines.append(
            "speaker-normalised rows z-score every speaker with that speaker's own unlabelled files: on new "
            "speakers this needs several recordings of each (predict uses 5 or more per speaker)"
        )
    return "\n".join(lines)
