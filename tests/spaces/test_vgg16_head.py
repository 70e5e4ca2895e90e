"""The ``vgg16_head`` space on cached ``vgg16_bottleneck`` features: the recipe's head, equal to spec_cnn's
``vgg16_frozen`` on the same spectrograms, and a study end to end through ``emotune search``.

A random-weights VGG16 file (tests/conftest.py); torch single-threaded, the machine is shared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest

from emotune.features import EmotuneError
from emotune.features._vgg import VGG16_WEIGHTS_ENV
from emotune.spaces import _torch, spec_cnn, vgg16_head

optuna.logging.set_verbosity(optuna.logging.WARNING)

EMOTUNE = str(Path(sys.executable).parent / "emotune")
S = optuna.trial.TrialState


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv(VGG16_WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(_torch.GPU_FRACTION_ENV, raising=False)


def test_seed_head_is_reachable_and_builds_the_seed_network() -> None:
    seed = {"batch_norm": True, "n_fc": 3, "fc_units": 256, "fc_dropout": 0.3, "optimizer": "sgd", "lr": 0.01}
    assert {**seed, "weight_decay": 1e-6, "batch_size": 16, "epochs": 30} == vgg16_head.SEED_PARAMS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FixedTrial warns about values outside a distribution
        assert vgg16_head.suggest(optuna.trial.FixedTrial(vgg16_head.SEED_PARAMS)) == vgg16_head.SEED_PARAMS
    estimator = vgg16_head.build({}, seed=0)  # no weights file needed: the features are cached
    assert estimator.net == _torch.MLPNet(fc_units=(256, 128), batch_norm=True, fc_dropout=0.3)
    assert (estimator.optimizer, estimator.lr, estimator.batch_size, estimator.epochs) == (
        "sgd",
        0.01,
        16,
        30,
    )
    assert type(estimator.preprocess).__name__ == "StandardScaler"
    with pytest.raises(EmotuneError, match="epochs=31"):
        vgg16_head.build({"epochs": 31}, seed=0)


def test_equals_spec_cnn_vgg16_frozen_on_the_same_spectrograms(
    vgg16_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bottleneck then the head (this space) is spec_cnn's frozen VGG16 pipeline, split at the cache."""
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(vgg16_weights))
    rng = np.random.default_rng(0)
    labels = np.array(["angry", "calm", "happy", "sad"])
    codes = np.arange(24) % 4
    X = np.clip(10.0 * rng.normal(size=(24, 32, 32)) - 40.0 + 8.0 * codes[:, None, None], -80.0, 0.0)
    X, y = X.astype(np.float32), labels[codes]
    params = {**vgg16_head.SEED_PARAMS, "epochs": 3}

    frozen = spec_cnn.build({**params, "arch": "vgg16_frozen"}, seed=5).fit(X, y)
    features = _torch.VGG16Bottleneck(weights_path=str(vgg16_weights)).fit_transform(X)
    head = vgg16_head.build(params, seed=5).fit(features, y)
    np.testing.assert_allclose(head.predict_proba(features), frozen.predict_proba(X), rtol=1e-3, atol=1e-4)
    assert head.n_epochs_ == frozen.n_epochs_ and list(head.classes_) == list(labels)


def _study(pg_url: str, name: str) -> optuna.Study:
    from emotune.search._storage import normalize_url

    return optuna.load_study(study_name=name, storage=normalize_url(pg_url))


def test_search_runs_a_study_on_cached_bottleneck_features(
    data_dir: Path, vgg16_weights: Path, tmp_path: Path, pg_url: str, study_name: str, ray_address: str
) -> None:
    data = tmp_path / "ravdess"
    for actor in ("Actor_01", "Actor_02", "Actor_03", "Actor_04"):
        (data / actor).mkdir(parents=True)
        for source in sorted((data_dir / "ravdess" / actor).glob("*.wav"))[::12]:  # 5 per actor, 4 emotions
            shutil.copy2(source, data / actor / source.name)
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != VGG16_WEIGHTS_ENV}
    env |= {"RAY_ADDRESS": ray_address, "EMOTUNE_HEARTBEAT_S": "1", "EMOTUNE_GRACE_S": "3"}
    args = [EMOTUNE, "search", "vgg16_head", "--study", study_name, "--data", str(data), "--trials", "2"]
    args += ["--workers", "1", "--storage", pg_url, "--cache", str(cache), "--sampler", "random"]

    missing = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    errors = [line for line in missing.stderr.splitlines() if line.startswith("emotune: error:")]
    assert len(errors) == 1 and VGG16_WEIGHTS_ENV in errors[0], missing.stderr

    env[VGG16_WEIGHTS_ENV] = str(vgg16_weights)
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    study = _study(pg_url, study_name)
    attrs = study.user_attrs
    assert attrs["space"] == "vgg16_head" and attrs["feature_set"] == "vgg16_bottleneck"
    stored = attrs["feature_params"]
    assert stored["size"] == [224, 224] and str(vgg16_weights) not in str(stored)
    import hashlib

    assert stored["weights_sha256"] == hashlib.sha256(vgg16_weights.read_bytes()).hexdigest()
    finished = [t for t in study.trials if t.state in (S.COMPLETE, S.PRUNED)]
    assert len(finished) == 2 and all(t.state != S.FAIL for t in study.trials)
    for trial in study.get_trials(states=(S.COMPLETE,)):
        assert 0.0 <= trial.user_attrs["uar"] <= 1.0
        steps = sorted(trial.intermediate_values)
        folds = len(trial.user_attrs["fold_scores"])
        for k in range(folds):  # per-epoch reports at fold * MAX_STEPS + epoch
            in_fold = [s for s in steps if k * vgg16_head.MAX_STEPS <= s < (k + 1) * vgg16_head.MAX_STEPS]
            assert in_fold and in_fold[0] == k * vgg16_head.MAX_STEPS
    # The search built the features into the cache, under the weights file's sha256.
    from emotune.features import default_params, load, scan

    rows = scan([data]).rows
    cached = load(rows, default_params("vgg16_bottleneck", vgg16_weights=vgg16_weights), cache_dir=cache)
    assert cached.X.shape == (20, 25088)
