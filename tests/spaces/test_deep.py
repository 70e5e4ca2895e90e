"""The deep spaces (cnn1d_pca, cnn1d_mfcc, spec_cnn) on tiny CPU data: shapes, determinism, pruning,
pickling, voters, the VGG16 variants with a throw-away weights file, and a run on real RAVDESS features.

Torch runs single-threaded here (``OMP_NUM_THREADS=1``): the machine is shared.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import optuna
import pytest

from emotune.features import EmotuneError
from emotune.spaces import _torch, cnn1d_mfcc, cnn1d_pca, spec_cnn

optuna.logging.set_verbosity(optuna.logging.WARNING)

N_CLASSES = 4
LABELS = np.array(["angry", "calm", "happy", "sad"])
# Small but real shapes: classic (180,), mfcc_seq 20 x 236, melspec downsized to 32 x 32 (any size works).
SHAPES: dict[str, tuple[int, ...]] = {"cnn1d_pca": (180,), "cnn1d_mfcc": (20, 236), "spec_cnn": (32, 32)}
SPACES = [cnn1d_pca, cnn1d_mfcc, spec_cnn]
# Small networks that learn the synthetic data in a few epochs.
QUICK: dict[str, dict[str, Any]] = {
    "cnn1d_pca": {"n_conv": 2, "channels": 16, "n_fc": 2, "fc_units": 32, "optimizer": "adamw", "lr": 3e-3},
    "cnn1d_mfcc": {"filters": 16, "dense_units": 32, "lr": 3e-3},
    "spec_cnn": {"n_blocks": 2, "channels": 8, "downsample": 1, "n_fc": 1, "lr": 3e-3},
}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv(_torch.VGG16_WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(_torch.GPU_FRACTION_ENV, raising=False)


def synthetic(
    space: ModuleType, n: int = 64, *, seed: int = 0, shift: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the space's feature shape whose class moves a block of values by ``shift``."""
    rng = np.random.default_rng(seed)
    codes = np.arange(n) % N_CLASSES
    X = rng.normal(size=(n, *SHAPES[space.NAME])).astype(np.float32)
    flat = X.reshape(n, -1)
    flat[:, :64] += shift * codes[:, None]
    if space is cnn1d_pca:  # mel powers are non-negative (the space takes their log)
        flat[:, cnn1d_pca.MEL_COLUMNS] = np.exp(flat[:, cnn1d_pca.MEL_COLUMNS])
    return X, LABELS[codes]


def quick(space: ModuleType, **extra: Any) -> _torch.TorchClassifier:
    return space.build({**QUICK[space.NAME], **extra}, seed=0)


# -------------------------------------------------------------------------------------------------
# suggest / build
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.NAME)
def test_seed_architecture_is_reachable(space: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_torch.VGG16_WEIGHTS_ENV, "/nonexistent/vgg16.pth")  # suggest only looks at the name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FixedTrial warns about values outside a distribution
        params = space.suggest(optuna.trial.FixedTrial(space.SEED_PARAMS))
    assert params == space.SEED_PARAMS


def test_default_small_spectrogram_cnn_is_reachable() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert spec_cnn.suggest(optuna.trial.FixedTrial(spec_cnn.DEFAULTS)) == spec_cnn.DEFAULTS


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.NAME)
def test_sampled_architectures_build_and_forward(space: ModuleType) -> None:
    """Random points of each space give networks that run on the feature shapes (PCA: 5 to 140 components)."""
    import torch

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    shapes: dict[str, list[tuple[int, ...]]] = {
        "cnn1d_pca": [(5,), (66,), (140,)],
        "cnn1d_mfcc": [(20, 236)],
        "spec_cnn": [(128, 128)],
    }
    for i in range(8):
        params = space.suggest(study.ask())
        assert 10 <= params["epochs"] <= space.MAX_STEPS
        estimator = space.build(params, seed=0)
        shape = shapes[space.NAME][i % len(shapes[space.NAME])]
        module = estimator.net.build(shape, N_CLASSES).eval()
        with torch.inference_mode():
            assert module(torch.zeros((2, *shape))).shape == (2, N_CLASSES)


def test_spec_cnn_offers_vgg16_only_with_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    study = optuna.create_study()
    trial = study.ask()
    spec_cnn.suggest(trial)
    assert trial.params["arch"] == "vgg_small"
    assert getattr(trial.distributions["arch"], "choices", None) == ("vgg_small",)
    monkeypatch.setenv(_torch.VGG16_WEIGHTS_ENV, str(tmp_path / "vgg16.pth"))
    trial = optuna.create_study().ask()
    spec_cnn.suggest(trial)
    assert "vgg16_frozen" in getattr(trial.distributions["arch"], "choices", ())  # finetune needs a GPU too


def test_epochs_beyond_max_steps_is_a_one_line_error() -> None:
    with pytest.raises(EmotuneError, match="MAX_STEPS") as info:
        cnn1d_mfcc.build({"epochs": cnn1d_mfcc.MAX_STEPS + 1}, seed=0)
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------------------------
# fit / predict_proba / determinism / pickling
# -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.NAME)
def test_fit_predict_shapes_and_probabilities(space: ModuleType) -> None:
    X, y = synthetic(space)
    reports: list[tuple[int, float]] = []
    estimator = space.fit(
        quick(space, epochs=4),
        X[:48],
        y[:48],
        X_val=X[48:],
        y_val=y[48:],
        report=lambda s, v: reports.append((s, v)),
    )
    proba = estimator.predict_proba(X[48:])
    assert proba.shape == (16, N_CLASSES)
    assert list(estimator.classes_) == sorted(LABELS)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert (proba >= 0).all()
    assert list(estimator.predict(X[48:])) == list(estimator.classes_[proba.argmax(axis=1)])
    assert [s for s, _ in reports] == list(range(estimator.n_epochs_))
    assert all(0.0 <= v <= 1.0 for _, v in reports)


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.NAME)
def test_same_seed_same_probabilities(space: ModuleType) -> None:
    import torch

    X, y = synthetic(space)
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    a = quick(space, epochs=3).fit(X, y).predict_proba(X)
    b = quick(space, epochs=3).fit(X, y).predict_proba(X)
    c = space.build({**QUICK[space.NAME], "epochs": 3}, seed=1).fit(X, y).predict_proba(X)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # the process's torch state is left as it was
    assert torch.equal(rng_state, torch.get_rng_state())
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("space", SPACES, ids=lambda s: s.NAME)
def test_pickle_round_trip_in_a_model_directory(space: ModuleType, tmp_path: Path) -> None:
    X, y = synthetic(space)
    estimator = quick(space, epochs=3).fit(X, y)
    expected = estimator.predict_proba(X)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "member.pkl").write_bytes(pickle.dumps(estimator))
    assert hasattr(estimator, "module_")  # pickling did not strip the live estimator
    loaded = pickle.loads((model_dir / "member.pkl").read_bytes())
    assert np.array_equal(loaded.predict_proba(X), expected)
    assert list(loaded.classes_) == list(estimator.classes_)


def test_torch_threads_follow_the_worker_share(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    seen: list[int] = []
    X, y = synthetic(cnn1d_mfcc, n=32)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    quick(cnn1d_mfcc, epochs=1).fit(X, y, on_epoch=lambda e, r: seen.append(torch.get_num_threads()))
    quick(cnn1d_mfcc, epochs=1).set_params(n_threads=1).fit(
        X, y, on_epoch=lambda e, r: seen.append(torch.get_num_threads())
    )
    assert seen == [2, 1]


def test_diverging_training_stops_and_keeps_finite_weights() -> None:
    X, y = synthetic(cnn1d_mfcc, n=48)
    estimator = quick(cnn1d_mfcc, epochs=5, optimizer="sgd", lr=1e4).fit(X, y)
    assert estimator.diverged_
    assert np.isfinite(estimator.predict_proba(X)).all()


def test_early_stopping_keeps_the_best_holdout_epoch() -> None:
    X, y = synthetic(cnn1d_mfcc, n=80, shift=0.05)  # nearly noise: the hold-out loss soon rises
    estimator = quick(cnn1d_mfcc, epochs=30, patience=2, lr=1e-2).fit(X, y)
    assert estimator.n_epochs_ < 30
    assert estimator.best_epoch_ == estimator.n_epochs_ - 1 - 2
    losses = [h["stop_loss"] for h in estimator.history_]
    assert losses[estimator.best_epoch_] == min(losses)


def test_holdout_split_is_stratified_and_keeps_every_class() -> None:
    codes = np.array([0] * 20 + [1] * 10 + [2] * 1)
    train, stop = _torch.holdout_split(codes, 0.2, seed=0)
    assert stop is not None
    assert np.bincount(codes[stop], minlength=3).tolist() == [4, 2, 0]
    assert sorted(np.concatenate([train, stop]).tolist()) == list(range(len(codes)))
    assert _torch.holdout_split(np.array([0, 1]), 0.2, seed=0)[1] is None


def test_a_voter_mixes_a_cnn_with_an_mlp() -> None:
    from sklearn.ensemble import VotingClassifier
    from sklearn.neural_network import MLPClassifier

    X, y = synthetic(cnn1d_pca)
    voter = VotingClassifier(
        [("cnn", quick(cnn1d_pca, epochs=3)), ("mlp", MLPClassifier(hidden_layer_sizes=(16,), max_iter=300))],
        voting="soft",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MLP's convergence warning
        voter.fit(X, y)
    proba = voter.predict_proba(X)
    assert proba.shape == (len(X), N_CLASSES)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.array_equal(pickle.loads(pickle.dumps(voter)).predict_proba(X), proba)


# -------------------------------------------------------------------------------------------------
# pruning
# -------------------------------------------------------------------------------------------------


def test_pruner_stops_a_hopeless_trial_early() -> None:
    """Good, hopeless (lr 1e-7), good again: the hopeless one is pruned at the first rung."""
    space = cnn1d_mfcc
    X, y = synthetic(space, n=96)
    good = {**QUICK["cnn1d_mfcc"], "epochs": 10, "patience": None}
    plans = [good, {**good, "optimizer": "sgd", "lr": 1e-7}, good]
    epochs_run: list[int] = []

    def objective(trial: optuna.trial.Trial) -> float:
        estimator = space.build(plans[trial.number], seed=0)

        def report(step: int, value: float) -> None:
            epochs_run[-1] = step + 1
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        epochs_run.append(0)
        space.fit(estimator, X[:64], y[:64], X_val=X[64:], y_val=y[64:], report=report)
        return float(np.mean(estimator.predict(X[64:]) == y[64:]))

    study = optuna.create_study(direction="maximize", pruner=space.pruner())
    study.optimize(objective, n_trials=3)
    states = [t.state for t in study.trials]
    assert states == [
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.COMPLETE,
    ]
    first_rung = space.MAX_STEPS // 10
    assert epochs_run == [10, first_rung + 1, 10]
    assert study.trials[1].intermediate_values[first_rung] < study.trials[0].intermediate_values[first_rung]


def test_pruning_happens_on_the_first_fold_only() -> None:
    """After the first fold (steps >= MAX_STEPS) a trial is never pruned, however bad its value."""
    space = cnn1d_mfcc
    study = optuna.create_study(direction="maximize", pruner=space.pruner())
    good = study.ask()
    for step in range(space.MAX_STEPS):
        good.report(0.9, step)
        assert not good.should_prune()  # asking records the trial's value at each rung
    study.tell(good, 0.9)
    first_rung = space.MAX_STEPS // 10
    in_fold0, later = study.ask(), study.ask()
    in_fold0.report(0.1, first_rung)
    later.report(0.1, 3 * space.MAX_STEPS + first_rung)
    assert in_fold0.should_prune()
    assert not later.should_prune()


def test_fit_runs_every_fold_of_the_search_objective() -> None:
    """The lead's objective: steps ``fold * MAX_STEPS + epoch``, fit() on each fold, OOF probabilities."""
    from emotune.search._objective import TrialData, make_objective

    space = cnn1d_mfcc
    X, y = synthetic(space, n=60)
    codes = np.searchsorted(LABELS, y)
    folds = [
        (np.flatnonzero(np.arange(60) % 3 != k), np.flatnonzero(np.arange(60) % 3 == k)) for k in range(3)
    ]
    data = TrialData(X=X, y=codes, folds=folds, classes=list(LABELS), hashes=[str(i) for i in range(60)])
    objective = make_objective(space, data, metric="uar", seed=0)
    study = optuna.create_study(direction="maximize", pruner=space.pruner())
    study.enqueue_trial({**space.SEED_PARAMS, **QUICK["cnn1d_mfcc"], "epochs": 10})
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    steps = sorted(trial.intermediate_values)
    for k in range(3):
        in_fold = [s for s in steps if k * space.MAX_STEPS <= s < (k + 1) * space.MAX_STEPS]
        assert in_fold[0] == k * space.MAX_STEPS  # epoch 0 of every fold was reported
    assert len(trial.user_attrs["fold_scores"]) == 3


# -------------------------------------------------------------------------------------------------
# VGG16 (random weights written to a temporary torchvision-style file)
# -------------------------------------------------------------------------------------------------


# The vgg16_weights fixture (seed 0) is in tests/conftest.py.


def test_vgg16_frozen_bottleneck_trains_its_head(
    vgg16_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_torch.VGG16_WEIGHTS_ENV, str(vgg16_weights))
    X, y = synthetic(spec_cnn, n=16)
    features = spec_cnn.bottleneck_features(X[:4], batch_size=2)
    assert features.shape == (4, _torch.BOTTLENECK_DIM) and features.dtype == np.float32
    assert np.array_equal(spec_cnn.bottleneck_features(X[:4], str(vgg16_weights)), features)  # memoised rows

    estimator = spec_cnn.build({**spec_cnn.SEED_PARAMS, "epochs": 2}, seed=0).fit(X, y)
    proba = estimator.predict_proba(X)
    assert proba.shape == (16, N_CLASSES)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.array_equal(pickle.loads(pickle.dumps(estimator)).predict_proba(X), proba)


def test_vgg16_finetune_builds_and_forwards_a_batch(vgg16_weights: Path) -> None:
    import torch

    estimator = spec_cnn.build(
        {
            "arch": "vgg16_finetune",
            "vgg16_weights": str(vgg16_weights),
            "n_fc": 2,
            "fc_units": 32,
            "epochs": 10,
        },
        seed=0,
    )
    module = estimator.net.build((32, 32), N_CLASSES)
    estimator.net.initialize(module)
    trunk, _ = _torch.load_vgg16_trunk(vgg16_weights)
    assert torch.equal(module.features[2].weight, trunk[2].weight)
    assert torch.equal(module.features[0].weight, trunk[0].weight)  # folded to one input channel
    images = torch.from_numpy(_torch.spectrogram_images(synthetic(spec_cnn, n=2)[0]))
    with torch.inference_mode():
        assert module.eval()(images).shape == (2, N_CLASSES)

    X, y = synthetic(spec_cnn, n=8)
    estimator.set_params(epochs=1, batch_size=4, patience=None).fit(X, y)  # one epoch, end to end
    proba = estimator.predict_proba(X)
    assert proba.shape == (8, N_CLASSES)
    assert np.array_equal(pickle.loads(pickle.dumps(estimator)).predict_proba(X), proba)


def test_grey_first_convolution_equals_three_channel_input(vgg16_weights: Path) -> None:
    import torch

    state = torch.load(vgg16_weights, weights_only=True)
    trunk, _ = _torch.load_vgg16_trunk(vgg16_weights)
    grey = torch.randn(1, 1, 8, 8)
    rgb = torch.nn.functional.conv2d(
        grey.expand(1, 3, 8, 8), state["features.0.weight"], state["features.0.bias"], padding=1
    )
    torch.testing.assert_close(trunk[0](grey), rgb, rtol=1e-5, atol=1e-5)


def test_missing_vgg16_weights_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EmotuneError) as info:
        spec_cnn.build({"arch": "vgg16_frozen"}, seed=0)
    assert "\n" not in str(info.value) and _torch.VGG16_WEIGHTS_ENV in str(info.value)
    monkeypatch.setenv(_torch.VGG16_WEIGHTS_ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(EmotuneError, match="no such file") as info:
        spec_cnn.bottleneck_features(np.zeros((1, 32, 32), np.float32))
    assert "\n" not in str(info.value) and _torch.VGG16_WEIGHTS_ENV in str(info.value)
    bad = tmp_path / "vgg16_bn.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(EmotuneError, match="not a torch state_dict") as info:
        spec_cnn.bottleneck_features(np.zeros((1, 32, 32), np.float32), str(bad))
    assert "\n" not in str(info.value)


# -------------------------------------------------------------------------------------------------
# resources
# -------------------------------------------------------------------------------------------------


def test_resources_ask_for_a_gpu_share_only_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    _torch.gpu_share.cache_clear()
    try:
        expected = {"num_cpus": 1, "num_gpus": 0.25} if torch.cuda.is_available() else {"num_cpus": 1}
        assert cnn1d_pca.RESOURCES == spec_cnn.RESOURCES == expected
        _torch.gpu_share.cache_clear()
        monkeypatch.setenv(_torch.GPU_FRACTION_ENV, "0.5")
        assert cnn1d_mfcc.RESOURCES == {"num_cpus": 1, "num_gpus": 0.5}
        _torch.gpu_share.cache_clear()
        monkeypatch.setenv(_torch.GPU_FRACTION_ENV, "lots")
        with pytest.raises(EmotuneError, match=_torch.GPU_FRACTION_ENV):
            _ = cnn1d_mfcc.RESOURCES
    finally:
        _torch.gpu_share.cache_clear()
    with pytest.raises(AttributeError):
        _ = cnn1d_mfcc.NOT_THERE


# -------------------------------------------------------------------------------------------------
# real features
# -------------------------------------------------------------------------------------------------


def test_real_ravdess_features_train_every_deep_space(data_dir: Path, tmp_path: Path) -> None:
    """Two epochs of each deep space on features built from 12 real RAVDESS files (two actors)."""
    from emotune import features

    paths = sorted((data_dir / "ravdess" / "Actor_01").glob("*.wav"))[::10]
    paths += sorted((data_dir / "ravdess" / "Actor_02").glob("*.wav"))[::10]
    rows = features.scan(paths, corpus="ravdess").rows
    sets = {space.NAME: space.FEATURES for space in SPACES}
    features.build(rows, sets=tuple(set(sets.values())), cache_dir=tmp_path, progress=False, num_cpus=1)
    for space in SPACES:
        data = features.load(rows, space.FEATURES, scheme="emotion", cache_dir=tmp_path)
        params = {**QUICK[space.NAME], "epochs": 2}
        estimator = space.build(params, seed=0).fit(data.X, data.y)
        proba = estimator.predict_proba(data.X)
        assert proba.shape == (len(data.y), len(set(data.y)))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
