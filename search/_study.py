"""Studies: one space x one feature set x one target x one protocol x one dataset.

A study records everything needed to reproduce its data without the user's command line: the space,
the feature parameters, the label scheme (target), the protocol, the metric, the seed, the number of
folds, speaker normalisation, and its dataset (every file with its content hash and labels, and the
test split). The small part lives in Optuna study user attributes (the dashboard shows them); the
file list lives in ``emotune_blobs`` so the dashboard does not load it for every page.

The test split is a pure function of (file hashes, target, protocol, seed): rows are ordered by
content hash before anything random happens, so two studies created separately on the same data
with the same seed get the same split and can be ensembled. Byte-identical files (one recording
under two paths) are one unit of the split and of the folds: a copy is never tested on while its
twin trains the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotune.features import METRICS, EmotuneError

PROTOCOLS = ("actor", "random")
SPEC_VERSION = 1
# The trial parameter that holds a trial's feature set when the study searches it.
FEATURES_PARAM = "features"


class StudyError(EmotuneError):
    """A study that does not exist, or does not match what the command asks for."""


@dataclass(frozen=True)
class StudySpec:
    """What a study is about. Stored as the study's user attributes (JSON-clean)."""

    space: str
    feature_set: str
    feature_params: dict[str, Any]
    target: str = "emotion"
    protocol: str = "actor"
    metric: str = "uar"
    seed: int = 0
    folds: int = 5
    speaker_norm: bool = False
    roots: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    dataset_sha: str = ""
    space_path: str | None = None
    # When the study searches the feature set: every candidate set's params (set -> params); each
    # trial's choice is its ``features`` parameter. Empty: the set is pinned to ``feature_set``.
    feature_choices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise StudyError(f"--protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if self.metric not in METRICS:
            raise StudyError(f"--metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if self.folds < 2:
            raise StudyError(f"--folds {self.folds} must be at least 2")

    def to_attrs(self) -> dict[str, Any]:
        """User attributes for Optuna (one per field, plus a marker and version)."""
        return {"emotune": SPEC_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StudySpec:
        """Read a spec back from study user attributes."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in attrs.items() if k in names})

    def mismatch(self, other: StudySpec) -> str | None:
        """The first setting in which two specs of one study name differ (None: compatible)."""
        for name in (
            "space",
            "feature_set",
            "target",
            "protocol",
            "metric",
            "seed",
            "speaker_norm",
            "dataset_sha",
        ):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                label = "dataset (files or their contents)" if name == "dataset_sha" else name
                if name == "dataset_sha":
                    return f"its {label} differ"
                return f"it was created with {label}={a!r}, not {b!r}"
        if _located(self.feature_params) != _located(other.feature_params):
            return "it was created with other feature parameters"
        if sorted(self.feature_choices) != sorted(other.feature_choices):
            return f"it searches feature sets {sorted(self.feature_choices)!r}, not {sorted(other.feature_choices)!r}"
        if {k: _located(v) for k, v in self.feature_choices.items()} != {
            k: _located(v) for k, v in other.feature_choices.items()
        }:
            return "it was created with other feature parameters"
        return None

    def for_trial(self, trial_params: dict[str, Any]) -> StudySpec:
        """The spec of one trial: the feature set it chose pinned (the spec itself when pinned already)."""
        chosen = trial_params.get(FEATURES_PARAM)
        if not self.feature_choices or chosen not in self.feature_choices:
            return self
        return dataclasses.replace(
            self, feature_set=chosen, feature_params=dict(self.feature_choices[chosen]), feature_choices={}
        )


def _located(params: dict[str, Any]) -> dict[str, Any]:
    """Feature params without where an ``ssl`` model lies (its weights' hash stays): a study resumed with
    the same weights in another folder (``--ssl-model``) is the same study."""
    return {k: v for k, v in params.items() if not (params.get("set") == "ssl" and k == "model")}


@dataclass
class StudyData:
    """A study's rows (ordered by content hash), their labels, groups and the test split."""

    rows: list[dict[str, Any]]  # Row fields as dicts (path, corpus, speaker, gender, emotion, ...)
    hashes: list[str]
    labels: list[str]
    test: np.ndarray  # bool mask over rows
    folds: list[tuple[np.ndarray, np.ndarray]]  # indices into the TRAINING rows

    def to_json(self) -> bytes:
        """Compact JSON for the blob store (folds are recomputed, they are a pure function)."""
        payload = {
            "rows": self.rows,
            "hashes": self.hashes,
            "labels": self.labels,
            "test": [int(i) for i in np.flatnonzero(self.test)],
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    @property
    def train_index(self) -> np.ndarray:
        return np.flatnonzero(~self.test)

    @property
    def test_index(self) -> np.ndarray:
        return np.flatnonzero(self.test)


def dataset_digest(hashes: Sequence[str], labels: Sequence[str], groups: Sequence[str]) -> str:
    """A short digest of a dataset: file contents, labels and speakers (order-independent)."""
    h = hashlib.sha256()
    for item in sorted(zip(hashes, labels, groups, strict=True)):
        h.update("\t".join(item).encode() + b"\n")
    return h.hexdigest()[:16]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def linked_groups(groups: Sequence[str], hashes: Sequence[str]) -> list[str]:
    """Each row's group, speakers that share a byte-identical file merged into one (their smallest name).

    A recording copied under two speakers' folders links them: held apart, one copy would be tested on
    while its twin trains the model. Without shared files this is ``groups`` itself.
    """
    parent = {g: g for g in groups}

    def root(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first: dict[str, str] = {}
    for g, h in zip(groups, hashes, strict=True):
        other = first.setdefault(h, g)
        a, b = root(g), root(other)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [root(g) for g in groups]


def duplicate_count(hashes: Sequence[str]) -> int:
    """How many rows are byte-identical copies of an earlier row (same content hash)."""
    return len(hashes) - len(set(hashes))


def make_split(
    hashes: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    genders: Sequence[str | None],
    *,
    protocol: str,
    seed: int,
    test_size: float = 0.2,
) -> np.ndarray:
    """Boolean test mask; a pure function of (hashes, labels, groups, protocol, seed).

    ``actor``: about ``test_size`` of the speakers (at least one; both genders when two or more are
    held out) are the test speakers; every file of theirs is test. ``random``: a stratified
    random 80/20 split of files (the published recipes' protocol).

    Byte-identical files (same hash) always land on one side: ``random`` splits distinct contents
    (a copy follows its original), ``actor`` treats speakers that share a file as one speaker. On
    data without copies both are the plain split of files and speakers.
    """
    n = len(hashes)
    if protocol == "actor":
        groups = linked_groups(groups, hashes)
        speakers = sorted(set(groups), key=lambda s: _rank(seed, s))
        if len(speakers) < 3:
            raise StudyError(
                f"the actor protocol needs at least 3 speakers (1 to test, 2 to cross-validate); "
                f"the data has {len(speakers)}: use --protocol random"
            )
        n_test = max(1, int(round(test_size * len(speakers))))
        n_test = min(n_test, len(speakers) - 2)
        gender_of: dict[str, str | None] = {}
        for g, sex in zip(groups, genders, strict=True):
            gender_of.setdefault(g, sex)
        chosen: list[str] = []
        if n_test >= 2:
            # Alternate genders (in rank order) so that both are held out when both exist.
            by_gender: dict[str | None, list[str]] = {}
            for s in speakers:
                by_gender.setdefault(gender_of[s], []).append(s)
            queues = [q for _, q in sorted(by_gender.items(), key=lambda kv: str(kv[0]))]
            while len(chosen) < n_test and any(queues):
                for q in queues:
                    if q and len(chosen) < n_test:
                        chosen.append(q.pop(0))
        else:
            chosen = speakers[:n_test]
        held = set(chosen)
        return np.array([g in held for g in groups], dtype=bool)
    if protocol == "random":
        from sklearn.model_selection import train_test_split

        # One unit per distinct content (its label: the first copy's in hash-then-label order).
        label_of: dict[str, str] = {}
        for i in sorted(range(n), key=lambda i: (hashes[i], labels[i])):
            label_of.setdefault(hashes[i], labels[i])
        units = sorted(label_of)
        y = np.asarray([label_of[h] for h in units])
        counts = {c: int((y == c).sum()) for c in set(y)}
        stratify = y if min(counts.values()) >= 2 else None
        _, test_pos = train_test_split(
            np.arange(len(units)), test_size=test_size, random_state=seed, shuffle=True, stratify=stratify
        )
        held = {units[i] for i in test_pos}
        return np.array([h in held for h in hashes], dtype=bool)
    raise StudyError(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")


def make_folds(
    labels: Sequence[str],
    groups: Sequence[str],
    *,
    protocol: str,
    folds: int,
    seed: int,
    quiet: bool = False,
    hashes: Sequence[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K folds over the TRAINING rows (grouped by speaker under ``actor``).

    With ``hashes``, byte-identical files stay in one fold: speakers that share a file are one group
    (``actor``), and copies are grouped (``random``). Without copies the folds are those of files.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(labels)
    if hashes is not None and protocol == "actor":
        groups = linked_groups(groups, hashes)
    g = np.asarray(groups)
    idx = np.zeros(len(y))
    if protocol == "random" and hashes is not None and duplicate_count(hashes):
        return _copy_grouped_folds(y, list(hashes), folds=folds, seed=seed, quiet=quiet)
    if protocol == "actor":
        n_speakers = len(set(g.tolist()))
        if n_speakers < 2:
            raise StudyError(
                f"cross-validation by speaker needs at least 2 training speakers, found {n_speakers}"
            )
        k = min(folds, n_speakers)
        if k < folds and not quiet:
            print(
                f"emotune: {n_speakers} training speakers: using {k} folds instead of {folds}",
                file=sys.stderr,
            )
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, va) for tr, va in cv.split(idx, y, g)]
    names, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min())) if len(counts) else folds
    if k < 2:
        raise StudyError(
            f"class {str(names[counts.argmin()])!r} has {counts.min()} training file(s): cross-validation "
            "needs at least 2; add files of it, or leave it out of --data"
        )
    if k < folds and not quiet:
        print(f"emotune: smallest class has {counts.min()} training files: using {k} folds", file=sys.stderr)
    cv2 = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in cv2.split(idx, y)]


def _copy_grouped_folds(
    y: np.ndarray, hashes: list[str], *, folds: int, seed: int, quiet: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of distinct contents (``random`` protocol with copies): a copy follows its original."""
    from sklearn.model_selection import StratifiedGroupKFold

    units = {h: i for i, h in enumerate(sorted(set(hashes)))}
    g = np.asarray([units[h] for h in hashes])
    per_class = {c: len({hashes[i] for i in np.flatnonzero(y == c)}) for c in set(y.tolist())}
    k = int(min(folds, min(per_class.values()))) if per_class else folds
    if k < 2:
        least = min(per_class, key=lambda c: per_class[c])
        raise StudyError(
            f"class {least!r} has {per_class[least]} distinct training file(s): cross-validation needs at "
            "least 2; add files of it, or leave it out of --data"
        )
    if k < folds and not quiet:
        print(f"emotune: smallest class has {min(per_class.values())} distinct training files: using {k} folds",
              file=sys.stderr)  # fmt: skip
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in cv.split(np.zeros(len(y)), y, g)]


def study_data(
    rows: Sequence[Any],
    hashes: Sequence[str],
    labels: Sequence[str],
    *,
    protocol: str,
    seed: int,
    folds: int,
    quiet: bool = False,
) -> StudyData:
    """Order rows by content hash, split them and make the training folds."""
    order = sorted(range(len(rows)), key=lambda i: (hashes[i], getattr(rows[i], "path", "")))
    rows_o = [
        dataclasses.asdict(rows[i]) if dataclasses.is_dataclass(rows[i]) else dict(rows[i]) for i in order
    ]
    hashes_o = [hashes[i] for i in order]
    labels_o = [labels[i] for i in order]
    groups = [r["speaker"] for r in rows_o]
    genders = [r.get("gender") for r in rows_o]
    test = make_split(hashes_o, labels_o, groups, genders, protocol=protocol, seed=seed)
    copies = duplicate_count(hashes_o)
    if copies and not quiet:
        print(
            f"emotune: {copies} file(s) are byte-identical copies of others: each copy stays on its "
            "original's side of the test split and in its fold",
            file=sys.stderr,
        )
    train = np.flatnonzero(~test)
    fold_list = make_folds(
        [labels_o[i] for i in train],
        [groups[i] for i in train],
        protocol=protocol,
        folds=folds,
        seed=seed,
        quiet=quiet,
        hashes=[hashes_o[i] for i in train],
    )
    return StudyData(rows=rows_o, hashes=hashes_o, labels=labels_o, test=test, folds=fold_list)


def study_data_from_json(data: bytes, spec: StudySpec, *, reroot: str | Path | None = None) -> StudyData:
    """Rebuild a study's data from its blob (folds recomputed; ``reroot`` moves paths)."""
    payload = json.loads(data)
    rows = payload["rows"]
    if reroot is not None:
        rows = [dict(r, path=_reroot(r["path"], spec.roots, Path(reroot))) for r in rows]
    test = np.zeros(len(rows), dtype=bool)
    test[payload["test"]] = True
    train = np.flatnonzero(~test)
    labels = payload["labels"]
    groups = [r["speaker"] for r in rows]
    fold_list = make_folds(
        [labels[i] for i in train],
        [groups[i] for i in train],
        protocol=spec.protocol,
        folds=spec.folds,
        seed=spec.seed,
        quiet=True,
        hashes=[payload["hashes"][i] for i in train],
    )
    return StudyData(rows=rows, hashes=payload["hashes"], labels=labels, test=test, folds=fold_list)


def _reroot(path: str, roots: Sequence[str], new_root: Path) -> str:
    for root in sorted(roots, key=len, reverse=True):
        if path.startswith(root.rstrip("/") + "/"):
            return str(new_root / path[len(root.rstrip("/")) + 1 :])
    return str(new_root / Path(path).name)
