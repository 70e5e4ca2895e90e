"""Deep spaces: epochs per second on RAVDESS-size data, and the time to a first finished trial.

For each deep space (``cnn1d_pca`` and ``cnn1d_mfcc`` with the published recipes' networks, ``spec_cnn``'s default
and largest small variants, ``vgg16_head``'s recipe head on 25,088-value bottleneck rows; spec_cnn's
VGG16 variants only where a GPU is present) it trains on an 80/20
split of 1,440 rows (the size of RAVDESS speech) with the torch threads of one worker (1 unless
``--threads``) and reports seconds per epoch. An epoch includes scoring the validation rows (the
per-epoch report) and the early-stopping hold-out; the one-off preprocessing (scaler, PCA, VGG16
bottleneck) is reported apart. Then, per space, a one-trial Optuna study (TPE, seed 0, the space's
pruner) on the same split, epochs capped at ``--trial-epochs``: the time from ``create_study`` to
the first finished trial, which includes building the network, preprocessing and training.

Rows are the real RAVDESS features of ``../shared/data`` (240 files, built through
``emotune.features`` into the default cache and repeated to 1,440 rows) when that package works,
else synthetic arrays of the same shapes (``--synthetic`` forces them); the table says which.
``vgg16_head``'s rows are always synthetic: its features need real VGG16 weights, which are not
here, and its epoch time does not depend on their values. The cost of computing those features
(``vgg16_bottleneck``, the frozen VGG16 at 224x224 with random weights) is reported as seconds per
file on this device, one torch thread on a CPU, over ``--vgg-files`` images.

Usage::

    .venv/bin/python benchmarks/deep.py                 # about 3 minutes on this machine
    .venv/bin/python benchmarks/deep.py --epochs 2 --trial-epochs 3 --synthetic

Prints a table, then one last line of ``name=value`` pairs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"classic": (180,), "mfcc_seq": (20, 236), "melspec": (128, 128)}
BOTTLENECK = (512 * 7 * 7,)
N_CLASSES = 8


def synthetic(feature_set: str, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Arrays of the feature set's shape whose class shifts a block of values (learnable, not trivial)."""
    rng = np.random.default_rng(seed)
    y = np.arange(rows) % N_CLASSES
    X = rng.normal(size=(rows, *SHAPES[feature_set])).astype(np.float32)
    flat = X.reshape(rows, -1)
    flat[:, :64] += 0.3 * y[:, None]
    if feature_set == "classic":
        flat[:, 52:180] = np.exp(flat[:, 52:180])  # mel powers are positive
    return X, y


def real(rows: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """The RAVDESS files of ../shared/data through emotune.features, repeated to ``rows`` rows."""
    from emotune import features

    data_dir = Path(os.environ.get("EMOTUNE_TEST_DATA") or ROOT.parent / "shared" / "data")
    scanned = features.scan([data_dir / "ravdess"], corpus="ravdess")
    features.build(scanned.rows, sets=tuple(SHAPES), progress=False)
    out = {}
    for name in SHAPES:
        data = features.load(scanned.rows, name, scheme="emotion")
        reps = -(-rows // len(data.y))
        out[name] = (np.concatenate([data.X] * reps)[:rows], np.concatenate([data.y] * reps)[:rows])
    return out, f"real RAVDESS ({len(scanned.rows)} files, repeated)"


def load_data(rows: int, force_synthetic: bool) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    if not force_synthetic:
        try:
            return real(rows)
        except Exception as exc:  # the features package may be unfinished or the data absent
            reason = " ".join(str(exc).split())[:100] or type(exc).__name__
            print(f"deep.py: using synthetic arrays ({reason})", file=sys.stderr)
    return {name: synthetic(name, rows) for name in SHAPES}, "synthetic"


def synthetic_bottleneck(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative (post-ReLU) rows of the bottleneck's width whose class shifts a block of values."""
    rng = np.random.default_rng(1)
    y = np.arange(rows) % N_CLASSES
    X = np.abs(rng.normal(size=(rows, *BOTTLENECK))).astype(np.float32)
    X[:, :64] += 0.3 * y[:, None]
    return X, y


def split(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(0.8 * len(y))
    return X[order[:cut]], y[order[:cut]], X[order[cut:]], y[order[cut:]]


def random_vgg16_weights(directory: str) -> str:
    """A torchvision-layout vgg16 state_dict with random weights: timings do not depend on the values."""
    import torch

    from emotune.spaces import _torch

    state, in_channels, index = {}, 3, 0
    for item in _torch.VGG16_LAYOUT:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(int(item), in_channels, 3, 3) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(int(item))
        in_channels, index = int(item), index + 2
    path = os.path.join(directory, "vgg16-random.pth")
    torch.save(state, path)
    return path


def bottleneck_s_per_file(weights: str, files: int, threads: int) -> float:
    """Seconds per file of the ``vgg16_bottleneck`` network step at 224x224 (CUDA when present)."""
    import torch

    from emotune.features import _vgg

    sha = _vgg.weights_sha256(weights)
    images = np.random.default_rng(0).normal(size=(files, 224, 224)).astype(np.float32)
    _vgg.bottleneck_features(images[:1], sha, weights_path=weights, n_threads=threads)  # load, warm up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    _vgg.bottleneck_features(images, sha, weights_path=weights, n_threads=threads)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / files


def variants(gpu: bool) -> list[tuple[str, str, Any, dict[str, Any]]]:
    from emotune.spaces import cnn1d_mfcc, cnn1d_pca, spec_cnn, vgg16_head

    out = [
        ("cnn1d_pca", "seed: 8 conv + 3 FC", cnn1d_pca, cnn1d_pca.SEED_PARAMS),
        ("cnn1d_mfcc", "seed: 2 blocks + 2 dense", cnn1d_mfcc, cnn1d_mfcc.SEED_PARAMS),
        ("spec_small", "vgg_small default", spec_cnn, spec_cnn.DEFAULTS),
        (
            "spec_largest",
            "vgg_small largest searched",
            spec_cnn,
            {**spec_cnn.DEFAULTS, "n_blocks": 4, "channels": 16, "convs_per_block": 2, "downsample": 2},
        ),
        ("vgg16_head", "seed head on bottleneck", vgg16_head, vgg16_head.SEED_PARAMS),
    ]
    if gpu:
        out += [
            ("vgg16_frozen", "VGG16 frozen (seed)", spec_cnn, spec_cnn.SEED_PARAMS),
            (
                "vgg16_finetune",
                "VGG16 fine-tuned",
                spec_cnn,
                {**spec_cnn.SEED_PARAMS, "arch": "vgg16_finetune"},
            ),
        ]
    return out


def time_epochs(space: Any, params: dict[str, Any], data: tuple, epochs: int) -> dict[str, float]:
    X_tr, y_tr, X_va, y_va = data
    estimator = space.build({**params, "epochs": epochs}, seed=0)
    started = time.perf_counter()
    estimator.fit(X_tr, y_tr, validation=(X_va, y_va))
    total = time.perf_counter() - started
    seconds = [h["seconds"] for h in estimator.history_]
    steady = seconds[1:] or seconds  # the first epoch carries one-off allocations
    per_epoch = float(np.median(steady))
    return {
        "epoch_s": per_epoch,
        "epochs_per_s": 1.0 / per_epoch,
        "prep_s": max(0.0, total - sum(seconds)),
        "input": "x".join(map(str, estimator.input_shape_)),
    }


def first_trial(space: Any, data: tuple, trial_epochs: int) -> tuple[float, str, int]:
    import optuna

    X_tr, y_tr, X_va, y_va = data
    ran: list[int] = []

    def objective(trial: optuna.trial.Trial) -> float:
        params = space.suggest(trial)
        params["epochs"] = min(params["epochs"], trial_epochs)
        estimator = space.build(params, seed=0)

        def report(step: int, value: float) -> None:
            ran.append(step)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        space.fit(estimator, X_tr, y_tr, X_val=X_va, y_val=y_va, report=report)
        return float(np.mean(estimator.predict(X_va) == y_va))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0), pruner=space.pruner()
    )
    study.optimize(objective, n_trials=1)
    elapsed = time.perf_counter() - started
    p = study.trials[0].params
    shape = {k: p[k] for k in ("arch", "n_conv", "n_blocks", "channels", "filters", "batch_size") if k in p}
    return elapsed, " ".join(f"{k}={v}" for k, v in shape.items()), len(ran)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1440, help="rows (default 1440, RAVDESS speech)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (default 3)")
    parser.add_argument(
        "--trial-epochs", type=int, default=5, help="epoch cap of the first trial (default 5)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, one worker's share (default 1)"
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="synthetic arrays even if real features load"
    )
    parser.add_argument(
        "--vgg-files", type=int, default=8, help="images timed through frozen VGG16 (default 8)"
    )
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import torch

    from emotune.spaces import _torch, cnn1d_mfcc, cnn1d_pca, spec_cnn, vgg16_head

    gpu = torch.cuda.is_available()
    device = (
        torch.cuda.get_device_name(0) if gpu else f"cpu ({args.threads} thread{'s' * (args.threads > 1)})"
    )
    t0 = time.perf_counter()
    arrays, source = load_data(args.rows, args.synthetic)
    load_s = time.perf_counter() - t0
    arrays["vgg16_bottleneck"] = synthetic_bottleneck(args.rows)
    splits = {name: split(*arrays[name]) for name in arrays}

    results: dict[str, float] = {}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        weights = random_vgg16_weights(tmp)
        if gpu and not os.environ.get(_torch.VGG16_WEIGHTS_ENV):
            os.environ[_torch.VGG16_WEIGHTS_ENV] = weights
        results["vgg16_bottleneck_s_per_file"] = bottleneck_s_per_file(weights, args.vgg_files, args.threads)
        print(f"vgg16_bottleneck: {results['vgg16_bottleneck_s_per_file']:.3f} s/file", file=sys.stderr)
        for key, label, space, params in variants(gpu):
            r = time_epochs(space, params, splits[space.FEATURES], args.epochs)
            results[f"{key}_epoch_s"] = r["epoch_s"]
            lines.append(
                f"{key:<15} {label:<27} {r['input']:>9} {r['epoch_s']:>9.2f} {r['epochs_per_s']:>9.2f} {r['prep_s']:>8.2f}"
            )
            print(lines[-1], file=sys.stderr, flush=True)
        trial_lines = []
        for space in (cnn1d_pca, cnn1d_mfcc, spec_cnn, vgg16_head):
            elapsed, shape, epochs = first_trial(space, splits[space.FEATURES], args.trial_epochs)
            results[f"{space.NAME}_first_trial_s"] = elapsed
            trial_lines.append(f"{space.NAME:<15} {elapsed:>9.1f} {epochs:>7}  {shape}")
            print(trial_lines[-1], file=sys.stderr, flush=True)

    n_train = int(0.8 * args.rows)
    print(
        f"deep spaces on {device}; data: {source}, {args.rows} rows ({n_train} train / {args.rows - n_train} val)"
    )
    print(
        f"data load {load_s:.1f} s; epoch = train + score val + early-stopping hold-out; median of epochs 2..{args.epochs}"
    )
    print(f"{'variant':<15} {'network':<27} {'input':>9} {'s/epoch':>9} {'epochs/s':>9} {'prep s':>8}")
    print("\n".join(lines))
    print(
        f"vgg16_head rows: synthetic 25,088-value bottlenecks. Computing them (vgg16_bottleneck, frozen "
        f"VGG16 at 224x224, {args.vgg_files} images): {results['vgg16_bottleneck_s_per_file']:.3f} s per file"
    )
    print(f"\nfirst finished trial (TPE seed 0, 1 split, epochs <= {args.trial_epochs})")
    print(f"{'space':<15} {'seconds':>9} {'epochs':>7}  sampled")
    print("\n".join(trial_lines))
    pairs = {
        **{k: f"{v:.3f}" for k, v in results.items()},
        "rows": str(args.rows),
        "threads": str(args.threads),
    }
    pairs["data"] = "real" if source.startswith("real") else "synthetic"
    pairs["device"] = "cuda" if gpu else "cpu"
    print(" ".join(f"{k}={v}" for k, v in pairs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
