"""A study's data, from folders to the arrays workers get: used by ``search`` and ``evaluate`` alike.

``labelled_rows`` scans the folders and keeps the files with a label under the target;
``build_features`` builds their feature sets in the cache (dropping files that fail);
``feature_matrix`` reads one set back in a given row order; ``trial_data`` makes the training
matrices, codes and folds the workers receive.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from emotune.features import Row
from emotune.search._objective import TrialData
from emotune.search._study import FEATURES_PARAM, StudyData, StudyError, StudySpec


def load_space(ref: str) -> ModuleType:
    """A space module by name or ``.py`` path (:func:`emotune.spaces.get`)."""
    from emotune.spaces import get

    return get(ref)


def labelled_rows(
    data: Sequence[str | Path], *, target: str, corpus: str | None = None, labels: str | None = None
) -> list[Row]:
    """The files under ``data`` that have a label under ``target`` (scan order).

    Raises:
        StudyError: No file has a label under ``target``.
    """
    from emotune.features import label_of, scan

    scanned = scan([str(d) for d in data], corpus=corpus, labels=labels)
    rows = [r for r in scanned.rows if label_of(r, target) is not None]
    if not rows:
        raise StudyError(f"no file under {', '.join(map(str, data))} has a label under --target {target}")
    return rows


def check_labels(rows: Sequence[Row], target: str) -> None:
    """What the labels alone must allow, checked before anything is built or created.

    Raises:
        StudyError: ``corpus_native`` on several corpora (their own labels do not compare), or fewer
            than 2 classes (named, with their files).
    """
    from collections import Counter

    from emotune.features import label_of

    if target == "corpus_native":
        corpora = sorted({r.corpus for r in rows})
        if len(corpora) > 1:
            raise StudyError(
                f"--target corpus_native: the data mixes corpora ({', '.join(corpora)}) whose own labels "
                "do not compare; give one corpus, or a shared target such as --target emotion"
            )
    counts = Counter(str(label_of(r, target)) for r in rows)
    if len(counts) < 2:
        ((only, n),) = counts.items()
        raise StudyError(
            f"every labelled file ({n}) has the class {only!r} under --target {target}: a classifier needs "
            "at least 2 classes"
        )


def check_split(sdata: StudyData, protocol: str) -> None:
    """Every class the study learns is in the training part and in every fold's training part.

    A fold that trains without a class fails or mis-scores its trials (some models refuse labels
    they did not see); this names the class instead, before the study exists.

    Raises:
        StudyError: The first class that is missing, with its files and speakers.
    """
    labels = np.asarray(sdata.labels)
    train = sdata.train_index
    speakers = [str(r["speaker"]) for r in sdata.rows]

    def where(c: str, idx: np.ndarray) -> str:
        mine = [i for i in idx if labels[i] == c]
        who = sorted({speakers[i] for i in mine})
        return f"{len(mine)} file(s), speaker(s) {', '.join(who[:4])}{' ...' if len(who) > 4 else ''}"

    for c in sorted(set(labels.tolist())):
        if not (labels[train] == c).any():
            raise StudyError(
                f"class {c!r} has no training file ({where(c, sdata.test_index)} all held out for test): "
                "add files of it, or leave it out of --data"
            )
    trained = set(labels[train].tolist())
    unit = "training speakers" if protocol == "actor" else "distinct training files"
    for k, (tr, _va) in enumerate(sdata.folds):
        missing = sorted(trained - set(labels[train[tr]].tolist()))
        if missing:
            c = missing[0]
            raise StudyError(
                f"class {c!r} is missing from the training part of fold {k + 1}/{len(sdata.folds)} "
                f"({where(c, train)} in training): cross-validation needs it in at least 2 {unit} "
                "spread over the folds; add files of it, or fewer --folds"
            )


def check_finite(rows: Sequence[dict[str, Any]], X: np.ndarray, feature_set: str) -> None:
    """Every feature of every row is a finite number (a NaN would fail every trial).

    Raises:
        StudyError: The first file and feature column that is not finite.
    """
    flat = X.reshape(len(X), -1)
    bad = ~np.isfinite(flat)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise StudyError(
            f"{rows[i]['path']}: feature {j} of {feature_set} is {flat[i, j]} ({int(bad.any(axis=1).sum())} "
            "file(s) hold such values): rebuild it with `emotune features prune` and `features build`, "
            "or leave the file out"
        )


def build_features(
    rows: Sequence[Row],
    params: Sequence[dict[str, Any]],
    *,
    cache_dir: str | Path | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
) -> tuple[list[Row], list[str]]:
    """Build every feature set of ``params`` for ``rows``; the rows that built, and their content hashes."""
    from emotune.features import build

    report = build(
        list(rows), params=list(params), cache_dir=cache_dir, ray_address=ray_address, num_cpus=num_cpus,
        progress=progress,
    )  # fmt: skip
    failed = {f["path"] for f in report.failed}
    kept = [r for r in rows if r.path not in failed]
    return kept, [report.hashes[r.path] for r in kept]


def feature_matrix(
    rows: Sequence[Row],
    hashes: Sequence[str],
    params: dict[str, Any],
    *,
    target: str,
    speaker_norm: bool,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """One feature set of ``rows`` from the cache, one row per hash of ``hashes`` (in that order).

    Raises:
        StudyError: A file's features are not in the cache.
    """
    from emotune.features import load

    ds = load(list(rows), params, scheme=target, cache_dir=cache_dir, speaker_norm=speaker_norm)
    pos = {h: i for i, h in enumerate(ds.hashes)}
    missing = [rows[i].path for i, h in enumerate(hashes) if h not in pos]
    if missing:
        raise StudyError(
            f"features of {missing[0]} are not in the cache (and {len(missing) - 1} more): run `emotune features build` on the study's data"
        )
    return np.asarray(ds.X[[pos[h] for h in hashes]])


def load_arrays(spec: StudySpec, sdata: StudyData, *, cache_dir: str | Path | None = None) -> np.ndarray:
    """The feature matrix of every row of a study, in the study's row order."""
    rows = [Row(**r) for r in sdata.rows]
    return feature_matrix(rows, sdata.hashes, spec.feature_params, target=spec.target,
                          speaker_norm=spec.speaker_norm, cache_dir=cache_dir)  # fmt: skip


def feature_sets(space: ModuleType, feature_set: str | Sequence[str] | None) -> list[str]:
    """The feature sets a study of ``space`` uses: one pinned, or several searched (first = default).

    ``feature_set`` is None (the space's ``FEATURES``), a set name, a comma-separated list, or
    ``"all"`` (every set the space accepts, its default first).

    Raises:
        StudyError: a set the space does not accept (the message lists those it does).
    """
    from emotune.spaces import accepts, reads_ssl

    ok = accepts(space)
    if feature_set is None:
        return [space.FEATURES]
    given = feature_set.split(",") if isinstance(feature_set, str) else list(feature_set)
    names = [n.strip() for n in given if n.strip()]
    if names == ["all"]:
        names = [space.FEATURES] + [n for n in ok if n != space.FEATURES]
    ok = (*ok, "ssl") if reads_ssl(space) and "ssl" not in ok else ok  # never in `all`: it needs a model
    bad = [n for n in names if n not in ok]
    if bad or not names:
        raise StudyError(
            f"--features {feature_set if isinstance(feature_set, str) else ','.join(given)}: space "
            f"{space.NAME} accepts {', '.join(ok)} (one, several separated by commas, or all)"
        )
    return list(dict.fromkeys(names))


def trial_data(spec: StudySpec, sdata: StudyData, *, cache_dir: str | Path | None = None) -> TrialData:
    """The training rows' matrices (one per searched feature set), codes and folds for the workers."""
    train = sdata.train_index
    sets = list(spec.feature_choices) or [spec.feature_set]
    by_set = {}
    for name in sets:
        X = load_arrays(spec.for_trial({FEATURES_PARAM: name}), sdata, cache_dir=cache_dir)
        check_finite(sdata.rows, X, name)
        by_set[name] = X[train]
    return trial_data_from(spec, sdata, by_set)


def trial_data_from(spec: StudySpec, sdata: StudyData, by_set: dict[str, np.ndarray]) -> TrialData:
    """:func:`trial_data` from matrices already loaded: ``by_set`` maps each set to its training rows."""
    train = sdata.train_index
    code = {c: i for i, c in enumerate(spec.classes)}
    return TrialData(
        X=by_set[spec.feature_set],
        y=np.array([code[sdata.labels[i]] for i in train], dtype=np.int64),
        folds=sdata.folds,
        classes=list(spec.classes),
        hashes=[sdata.hashes[i] for i in train],
        X_by_set=dict(by_set) if spec.feature_choices else None,
    )


def class_order(target: str, rows: Sequence[Any]) -> Any:
    """Sort key of class names: the label scheme's order for ``rows``, unknown names last."""
    from emotune.features import class_names

    order = {c: i for i, c in enumerate(class_names(target, rows))}
    return lambda c: (order.get(c, len(order)), c)
