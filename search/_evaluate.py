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

from emotune.features._errors import EmotuneError

DEFAULT_SPACES = ("knn", "logreg", "mlp")
DEFAULT_OUTER_FOLDS = 5
DEFAULT_INNER_FOLDS = 3
DEFAULT_TRIALS = 20
DEFAULT_TIMEOUT = 120.0
DEFAULT_WORKERS = 2
DEFAULT_TOP_K = 3


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
        """Mean and std over folds of test accuracy and UAR, per space (its best trial) and the voter."""
        names: list[str] = []
        for f in self.folds:
            for r in f.rows:
                if r["model"] not in names:
                    names.append(r["model"])
        out = []
        for name in names:
            acc = [r["test_accuracy"] for f in self.folds for r in f.rows if r["model"] == name]
            uar = [r["test_uar"] for f in self.folds for r in f.rows if r["model"] == name]
            out.append(
                {
                    "model": name,
                    "folds": len(acc),
                    "accuracy_mean": float(np.mean(acc)),
                    "accuracy_std": float(np.std(acc)),
                    "uar_mean": float(np.mean(uar)),
                    "uar_std": float(np.std(uar)),
                }
            )
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
    """
    n = len(labels)
    if protocol == "actor":
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
    from sklearn.model_selection import StratifiedKFold

    order_idx = np.array(sorted(range(n), key=lambda i: hashes[i]))
    y = np.asarray(labels)[order_idx]
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
    speaker_norm: bool = False,
    corpus: str | None = None,
    labels: str | None = None,
    cache_dir: str | Path | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
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
        target, protocol, metric, seed, speaker_norm, corpus, labels: as for ``emotune search``.
        cache_dir, ray_address, num_cpus: feature cache and Ray settings.
        progress: Progress on stderr.
    """
    from emotune.features import build, default_params, label_of, scan
    from emotune.search import _search
    from emotune.search._objective import TrialData
    from emotune.search._study import PROTOCOLS, StudySpec, make_folds

    t_start = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise EvaluateError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if outer < 2:
        raise EvaluateError(f"--outer-folds {outer} must be at least 2")
    if not spaces:
        raise EvaluateError("--spaces: give at least one space")
    modules = [_search._load_space(s) for s in spaces]
    if len({m.NAME for m in modules}) != len(modules):
        raise EvaluateError(f"--spaces {','.join(spaces)}: a space is given twice")
    for d in data:
        if not Path(d).exists():
            raise EvaluateError(f"{d}: no such file or folder")
    params = {m.FEATURES: default_params(m.FEATURES) for m in modules}

    scanned = scan([str(d) for d in data], corpus=corpus, labels=labels)
    rows = [r for r in scanned.rows if label_of(r, target) is not None]
    if not rows:
        raise EvaluateError(f"no file under {', '.join(map(str, data))} has a label under --target {target}")
    _say(f"{len(rows)} labelled files; building features ({', '.join(params)}) ...", progress)
    report = build(
        rows,
        params=list(params.values()),
        cache_dir=cache_dir,
        ray_address=ray_address,
        num_cpus=num_cpus,
        progress=progress,
    )
    failed = {f["path"] for f in report.failed}
    rows = [r for r in rows if r.path not in failed]
    order = sorted(range(len(rows)), key=lambda i: (report.hashes[rows[i].path], rows[i].path))
    rows = [rows[i] for i in order]
    hashes = [report.hashes[r.path] for r in rows]
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
    if k < outer:
        _say(f"using {k} outer folds instead of {outer} (too few speakers or files per class)", progress)
    tests = outer_folds(labels_, groups, [r.gender for r in rows], hashes, protocol=protocol, k=k, seed=seed)

    settings: dict[str, Any] = {
        "data": [str(Path(d).resolve()) for d in data],
        "files": len(rows),
        "speakers": n_speakers,
        "spaces": [m.NAME for m in modules],
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
        "speaker_norm": speaker_norm,
    }
    _say(
        f"nested evaluation: {k} outer folds ({'held-out speakers' if protocol == 'actor' else 'stratified files'}) x "
        f"spaces {', '.join(m.NAME for m in modules)}: up to {trials} trials per search"
        + (f" (or {timeout:g} s)" if timeout else "")
        + f", {workers} workers, inner {inner}-fold CV ({'grouped by speaker' if protocol == 'actor' else 'stratified'}), "
        f"ensemble of the top {top_k} of each, metric {metric}",
        progress,
    )

    # Every input's features over all rows, once (slices feed the folds).
    from emotune.search._study import StudyData, dataset_digest

    row_dicts = [dataclasses.asdict(r) for r in rows]
    everything = StudyData(row_dicts, hashes, labels_, np.zeros(len(rows), dtype=bool), [])
    specs_all = {
        m.NAME: StudySpec(
            space=m.NAME,
            feature_set=m.FEATURES,
            feature_params=params[m.FEATURES],
            target=target,
            protocol=protocol,
            metric=metric,
            seed=seed,
            folds=inner,
            speaker_norm=speaker_norm,
            roots=settings["data"],
            space_path=str(Path(s).resolve()) if s.endswith(".py") else None,
        )
        for m, s in zip(modules, spaces, strict=True)
    }
    arrays_by_set: dict[str, np.ndarray] = {}
    for m in modules:
        if m.FEATURES not in arrays_by_set:
            arrays_by_set[m.FEATURES] = _search.load_arrays(
                specs_all[m.NAME], everything, cache_dir=cache_dir
            )

    result = EvaluateResult(settings)
    run_id = uuid.uuid4().hex[:8]
    for f, test_idx in enumerate(tests):
        t0 = time.perf_counter()
        train_idx = np.setdiff1d(np.arange(len(rows)), test_idx)
        held = sorted({groups[i] for i in test_idx})
        _say(
            f"outer fold {f + 1}/{k}: {len(train_idx)} training files, {len(test_idx)} test files"
            + (f" (speakers {', '.join(held)})" if protocol == "actor" else ""),
            progress,
        )
        tr_rows = [rows[i] for i in train_idx]
        tr_labels = [labels_[i] for i in train_idx]
        classes = sorted(set(tr_labels), key=_search._class_order(target, tr_rows))
        folds = make_folds(
            tr_labels, [groups[i] for i in train_idx], protocol=protocol, folds=inner, seed=seed, quiet=True
        )
        sdata = StudyData(
            [row_dicts[i] for i in train_idx],
            [hashes[i] for i in train_idx],
            tr_labels,
            np.zeros(len(train_idx), dtype=bool),
            folds,
        )
        digest = dataset_digest(sdata.hashes, sdata.labels, [groups[i] for i in train_idx])
        names: list[str] = []
        trial_counts: dict[str, dict[str, int]] = {}
        try:
            for m in modules:
                name = f"evaluate-{run_id}-f{f + 1}-{m.NAME}"
                spec = dataclasses.replace(specs_all[m.NAME], classes=classes, dataset_sha=digest)
                names.append(name)
                _search.create_or_check(url, name, spec, sdata)
                code = {c: i for i, c in enumerate(classes)}
                tdata = TrialData(
                    X=arrays_by_set[m.FEATURES][train_idx],
                    y=np.array([code[v] for v in tr_labels], dtype=np.int64),
                    folds=folds,
                    classes=classes,
                    hashes=sdata.hashes,
                )
                prep = _search.Prepared(name, url, m, spec, sdata, tdata, True)
                summary = _search.run(
                    prep,
                    n_trials=trials,
                    workers=workers,
                    ray_address=ray_address,
                    num_cpus=num_cpus,
                    timeout=timeout,
                    progress=progress,
                )
                if summary.get("interrupted"):
                    raise KeyboardInterrupt
                trial_counts[m.NAME] = {s: int(summary[s]) for s in ("complete", "pruned", "fail")}
            rows_out = _ensemble_fold(
                url,
                names,
                arrays_by_set,
                labels_,
                classes,
                train_idx,
                test_idx,
                metric=metric,
                top_k=top_k,
                progress=progress,
            )
        finally:
            _delete_studies(url, names)
        fr = FoldResult(
            f + 1,
            held if protocol == "actor" else [],
            len(train_idx),
            len(test_idx),
            rows_out,
            trial_counts,
            time.perf_counter() - t0,
        )
        result.folds.append(fr)
        voter = rows_out[-1]
        _say(
            f"outer fold {f + 1}/{k} done in {fr.seconds:.0f} s: voter test accuracy {voter['test_accuracy']:.3f}, "
            f"UAR {voter['test_uar']:.3f}",
            progress,
        )
    result.settings["seconds"] = round(time.perf_counter() - t_start, 1)
    return result


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
) -> list[dict[str, Any]]:
    """Weights on the fold's studies' out-of-fold data, refit on its training rows, test once."""
    from emotune.search._ensemble import (
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
    )
    out = []
    best_of: dict[str, dict[str, Any]] = {}
    for r in fit.rows[:-1]:
        if r["test_accuracy"] is not None and r["study"] not in best_of:
            best_of[r["study"]] = r  # candidates come best first within a study
    for r in best_of.values():
        out.append({"model": r["space"], "member": r["member"], **_scores(r)})
    v = fit.rows[-1]
    out.append({"model": "voter", "member": v["space"], "weights": _weights(fit.rows[:-1]), **_scores(v)})
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


def format_summary(result: EvaluateResult) -> str:
    """Per fold (voter) and the mean +- std table."""
    from emotune.search._cli_common import table

    lines = []
    fold_rows = []
    for f in result.folds:
        v = f.rows[-1]
        fold_rows.append(
            [
                f.fold,
                ", ".join(f.test_speakers) or "-",
                f.n_train,
                f.n_test,
                f"{v['test_accuracy']:.3f}",
                f"{v['test_uar']:.3f}",
                "; ".join(f"{s}: {c['complete']}+{c['pruned']}p" for s, c in f.trials.items()),
                f"{f.seconds:.0f}",
            ]
        )
    lines.append(
        table(
            [
                "fold",
                "test speakers",
                "train",
                "test",
                "voter acc",
                "voter UAR",
                "trials (complete+pruned)",
                "s",
            ],
            fold_rows,
        )
    )
    lines.append("")
    lines.append(
        table(
            ["model", "folds", "test accuracy", "test UAR"],
            [
                [
                    s["model"],
                    s["folds"],
                    f"{s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}",
                    f"{s['uar_mean']:.3f} ± {s['uar_std']:.3f}",
                ]
                for s in result.summary()
            ],
        )
    )
    st = result.settings
    lines.append(
        f"\n{st['outer_folds']} outer folds ({st['protocol']}), {st['files']} files of {st['speakers']} speakers, "
        f"target {st['target']}; per fold and space up to {st['trials']} trials"
        + (f" / {st['timeout_s']:g} s" if st["timeout_s"] else "")
        + f", inner {st['inner_folds']}-fold CV; models = each space's best trial refit; voter = greedy "
        f"weights on inner out-of-fold {st['metric']}; {st.get('seconds', 0):.0f} s in all"
    )
    return "\n".join(lines)
