"""Searching the ``ssl`` set through the real CLI: the layer as a trial parameter, a voter mixing an
``ssl`` member with a ``functionals`` one, export, predict and its refusal of other weights.

A tiny random WavLM (tests/ssl_models.py) stands for a user's model folder; the four RAVDESS actors,
the machine's PostgreSQL and the session's Ray are real.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from ssl_models import tiny_model

from emotune.search._data import feature_sets
from emotune.search._export import delete_study
from emotune.search._study import StudyError
from emotune.spaces import get
from emotune.spaces._ssl_view import LayerView, select

ONE = "Actor_02/03-01-05-02-01-01-02.wav"
EMOTUNE = str(Path(sys.executable).parent / "emotune")


def run_cli(*args: Any, env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess[str]:
    """The real `emotune` entry point (module-scoped fixtures cannot use the function-scoped ``run_cli``)."""
    proc = subprocess.run([EMOTUNE, *map(str, args)], capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"emotune {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stderr}")
    return proc


def test_flat_feature_spaces_read_ssl_but_all_leaves_it_out():
    for name in ("knn", "logreg", "svm", "mlp", "rf", "dtree", "xgb", "lgbm"):
        assert feature_sets(get(name), "ssl") == ["ssl"], name
        assert "ssl" not in feature_sets(get(name), "all"), name
    with pytest.raises(StudyError, match="space cnn1d_mfcc accepts mfcc_seq"):
        feature_sets(get("cnn1d_mfcc"), "ssl")


def test_a_study_is_the_same_with_its_weights_in_another_folder_not_with_other_weights():
    from emotune.search._study import StudySpec

    params = {"set": "ssl", "model": "/a/wavlm", "weights": "1" * 64, "layers": 4}
    spec = StudySpec(space="logreg", feature_set="ssl", feature_params=params)
    moved = StudySpec(space="logreg", feature_set="ssl", feature_params={**params, "model": "/b/wavlm"})
    other = StudySpec(space="logreg", feature_set="ssl", feature_params={**params, "weights": "2" * 64})
    assert spec.mismatch(moved) is None
    assert spec.mismatch(other) == "it was created with other feature parameters"


def test_a_layer_view_reads_one_layer_as_means_or_means_and_stds():
    X = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # 2 files, 3 hidden states, dim 2
    np.testing.assert_array_equal(select(X, 1, "mean"), X[:, 1, :2])
    np.testing.assert_array_equal(select(X, 2, "mean+std"), X[:, 2])
    with pytest.raises(ValueError, match="layer=3 is outside the encoder's 0..2"):
        select(X, 3, "mean")


@pytest.fixture(scope="module")
def flow(tmp_path_factory, pg_url, ravdess, feature_cache, search_env) -> Iterator[dict[str, Any]]:
    """A model folder, an ssl study (logreg, 8 trials), a functionals study (knn), their voter."""
    root = tmp_path_factory.mktemp("ssl-flow")
    model = tiny_model(root / "wavlm", "wavlm", seed=0)
    a, b = f"test-ssl-{uuid.uuid4().hex[:8]}", f"test-ssl-{uuid.uuid4().hex[:8]}"
    common = ["--data", ravdess, "--workers", "2", "--storage", pg_url, "--cache", feature_cache]
    try:
        run_cli("search", "logreg", "--study", a, "--features", "ssl", "--ssl-model", model, "--trials", "8",
                "--sampler", "random", *common, env=search_env, check=True)  # fmt: skip
        run_cli("search", "knn", "--study", b, "--trials", "4", *common, env=search_env, check=True)
        out = root / "model"
        # stacked: every member stays in the voter (greedy weights may drop the random-weights ssl
        # member, and the tests below are about a voter that holds one)
        run_cli("ensemble", a, b, "--out", out, "--voter", "stacked", "--storage", pg_url, "--cache",
                feature_cache, env=search_env, check=True)  # fmt: skip
        yield {"model": model, "a": a, "b": b, "out": out, "root": root, "common": common}
    finally:
        for name in (a, b):
            delete_study(pg_url, name)


def _study(pg_url: str, name: str) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    )


def test_the_study_records_the_model_and_its_trials_search_the_layer(flow, pg_url):
    study = _study(pg_url, flow["a"])
    params = study.user_attrs["feature_params"]
    assert params["set"] == "ssl" and params["model"] == str(flow["model"]) and len(params["weights"]) == 64
    layers = {t.params["layer"] for t in study.trials if "layer" in t.params}
    poolings = {t.params["pooling"] for t in study.trials if "pooling" in t.params}
    assert len(study.trials) == 8 and len(layers) >= 2 and layers <= {0, 1, 2, 3}
    assert poolings <= {"mean", "mean+std"}


def test_export_says_which_model_and_layer(flow, pg_url, search_env):
    out = flow["root"] / "best.json"
    run_cli("export", flow["a"], "--out", out, "--storage", pg_url, env=search_env, check=True)
    best = json.loads(out.read_text())
    assert best["feature_set"] == "ssl" and best["feature_params"]["model"] == str(flow["model"])
    assert isinstance(best["params"]["layer"], int) and best["params"]["pooling"] in ("mean", "mean+std")


def test_the_voter_mixes_an_ssl_member_with_a_functionals_member(flow):
    manifest = json.loads((flow["out"] / "manifest.json").read_text())
    sets = {spec["feature_params"]["set"] for spec in manifest["inputs"].values()}
    assert sets == {"ssl", "functionals"}
    import joblib

    voter = joblib.load(flow["out"] / "voter.joblib")
    views = [m for m in voter.estimators_ if isinstance(m, LayerView)]
    assert views and all(0 <= v.layer <= 3 for v in views)  # the ssl member reads its trial's layer


def test_predict_recomputes_from_the_manifest_and_refuses_other_weights_in_one_line(
    flow, ravdess, run_cli, search_env
):
    one = ravdess / ONE
    ok = run_cli("predict", flow["out"], one, "--json", env=search_env)
    assert ok.returncode == 0, ok.stderr
    first = json.loads(ok.stdout)[0]
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-9

    # The weights moved: refused where the manifest points, accepted by content where --ssl-model points.
    moved = flow["root"] / "moved-wavlm"
    shutil.move(flow["model"], moved)
    try:
        gone = run_cli("predict", flow["out"], one, env=search_env)
        assert gone.returncode == 1 and "Traceback" not in gone.stderr
        assert len([x for x in gone.stderr.splitlines() if x.strip()]) == 1 and "wavlm" in gone.stderr
        there = run_cli("predict", flow["out"], one, "--json", "--ssl-model", moved, env=search_env)
        assert there.returncode == 0, there.stderr
        assert json.loads(there.stdout)[0]["probabilities"] == first["probabilities"]
        # Other weights in the manifest's folder: refused in one line, by content.
        tiny_model(flow["model"], "wavlm", seed=1)
        other = run_cli("predict", flow["out"], one, env=search_env)
        lines = [x for x in other.stderr.splitlines() if x.strip()]
        assert other.returncode == 1 and len(lines) == 1 and "are not the ones" in lines[0]
        assert other.stdout == ""
    finally:
        shutil.rmtree(flow["model"], ignore_errors=True)
        shutil.move(moved, flow["model"])
