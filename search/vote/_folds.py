"""Outer folds from a file, so that published protocols can be reproduced (``evaluate --folds CSV``).

The file has a header ``speaker,fold`` and one row per speaker: the speaker id as emotune prints it
(``ravdess:01``: corpus and the corpus's own id) and its fold, an integer from 1. Every speaker of the
data must be in the file; speakers of the file that the data lacks are ignored, and so are folds left
without any file (a benchmark's folds over 24 actors, evaluated on some of them). At least two folds
must hold files. ``../shared/folds/emobox_ravdess.csv`` holds the EmoBox benchmark's six RAVDESS folds.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotune.features import EmotuneError

__all__ = ["FoldsError", "folds_from_file", "read_folds"]


class FoldsError(EmotuneError):
    """A folds file that cannot be used with the data (one line naming the file and the row)."""


def read_folds(path: str | os.PathLike[str]) -> dict[str, int]:
    """speaker -> fold (from 1) of a ``speaker,fold`` CSV file.

    Raises:
        FoldsError: unreadable, another header, a fold that is not an integer >= 1, a speaker twice.
    """
    where = Path(path)
    try:
        with where.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise FoldsError(f"--folds {where}: cannot read ({exc})") from None
    if not rows or [c.strip() for c in rows[0]] != ["speaker", "fold"]:
        raise FoldsError(f"--folds {where}: the first line must be the header speaker,fold")
    out: dict[str, int] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != 2:
            raise FoldsError(f"--folds {where} line {n}: expected speaker,fold, got {','.join(row)!r}")
        speaker, fold = row[0].strip(), row[1].strip()
        if not fold.isdigit() or int(fold) < 1:
            raise FoldsError(f"--folds {where} line {n}: fold {fold!r} must be an integer from 1")
        if speaker in out:
            raise FoldsError(f"--folds {where} line {n}: speaker {speaker} is given twice")
        out[speaker] = int(fold)
    return out


def folds_from_file(path: str | os.PathLike[str], groups: Sequence[str]) -> list[np.ndarray]:
    """Test-row indices of each outer fold the file gives the data's speakers (``groups``, one per row).

    Folds come in the file's numbering; a fold without any row of the data is left out.

    Raises:
        FoldsError: a speaker of the data missing from the file, or fewer than two folds with files.
    """
    fold_of = read_folds(path)
    missing = sorted(set(groups) - set(fold_of))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FoldsError(f"--folds {path}: speaker {missing[0]}{more} of the data is not in the file")
    row_fold = np.array([fold_of[g] for g in groups])
    tests = [np.flatnonzero(row_fold == f) for f in sorted(set(row_fold.tolist()))]
    if len(tests) < 2:
        raise FoldsError(
            f"--folds {path}: the data's speakers fall in {len(tests)} fold; at least 2 are needed"
        )
    return tests
