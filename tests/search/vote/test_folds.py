"""``evaluate --folds CSV``: outer folds from a published protocol's file (speaker,fold)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emotune.search.vote._folds import FoldsError, folds_from_file, read_folds

EMOBOX = Path(__file__).resolve().parents[3].parent / "shared" / "folds" / "emobox_ravdess.csv"


def test_the_emobox_file_holds_six_folds_of_four_actors():
    folds = read_folds(EMOBOX)
    assert len(folds) == 24 and sorted(set(folds.values())) == [1, 2, 3, 4, 5, 6]
    assert all(list(folds.values()).count(f) == 4 for f in range(1, 7))
    groups = ["ravdess:01"] * 3 + ["ravdess:02"] * 2 + ["ravdess:03"] + ["ravdess:04"] * 2
    tests = folds_from_file(EMOBOX, groups)  # folds 1, 5, 4, 2 hold them; 3 and 6 hold none: left out
    assert [sorted({groups[i] for i in t}) for t in tests] == [["ravdess:01"], ["ravdess:04"], ["ravdess:03"],
                                                                ["ravdess:02"]]  # fmt: skip
    assert np.array_equal(np.sort(np.concatenate(tests)), np.arange(len(groups)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("actor,fold\nravdess:01,1\n", "the first line must be the header speaker,fold"),
        ("speaker,fold\nravdess:01,0\n", "line 2: fold '0' must be an integer from 1"),
        ("speaker,fold\nravdess:01,1\nravdess:01,2\n", "line 3: speaker ravdess:01 is given twice"),
        ("speaker,fold\nravdess:01,1,x\n", "line 2: expected speaker,fold"),
    ],
)
def test_a_bad_file_is_one_line_naming_it_and_the_line(tmp_path, text, message):
    path = tmp_path / "folds.csv"
    path.write_text(text)
    with pytest.raises(FoldsError, match=message) as info:
        read_folds(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_every_speaker_of_the_data_must_be_in_the_file_and_two_folds_hold_files(tmp_path):
    path = tmp_path / "folds.csv"
    path.write_text("speaker,fold\nravdess:01,1\nravdess:02,1\n")
    with pytest.raises(FoldsError, match=r"speaker ravdess:03 \(and 1 more\) of the data is not in the file"):
        folds_from_file(path, ["ravdess:01", "ravdess:03", "ravdess:04"])
    with pytest.raises(FoldsError, match="fall in 1 fold; at least 2 are needed"):
        folds_from_file(path, ["ravdess:01", "ravdess:02"])


def test_evaluate_cli_runs_the_folds_of_a_file(pg_url, feature_cache, ravdess, run_cli, search_env, tmp_path):
    folds = tmp_path / "folds.csv"
    folds.write_text("speaker,fold\nravdess:01,1\nravdess:02,2\nravdess:03,1\nravdess:04,2\n")
    common = ["--spaces", "knn", "--inner-folds", "2", "--trials", "1", "--workers", "1", "--no-speaker-norm",
              "--cache", feature_cache, "--storage", pg_url]  # fmt: skip
    proc = run_cli("evaluate", ravdess, "--folds", folds, "--json", *common, env=search_env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["settings"]["outer_folds"] == 2 and len(doc["folds"]) == 2
    assert [f["n_test"] for f in doc["folds"]] == [120, 120]  # two actors of 60 files held out in each
    both = run_cli("evaluate", ravdess, "--folds", folds, "--outer-folds", "2", *common, env=search_env)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    folds.write_text("speaker,fold\nravdess:01,1\nravdess:02,2\nravdess:03,1\n")
    missing = run_cli("evaluate", ravdess, "--folds", folds, *common, env=search_env)
    lines = [x for x in missing.stderr.splitlines() if x.startswith("emotune: error")]
    assert missing.returncode == 1 and lines == [
        f"emotune: error: --folds {folds}: speaker ravdess:04 of the data is not in the file"
    ]
