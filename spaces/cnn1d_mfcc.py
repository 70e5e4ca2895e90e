"""1-D CNN on MFCC sequences (the MFCC-sequence recipe).

That recipe fed 20 MFCC x 236 frames to two blocks of ``Conv1D + ReLU + pooling + dropout`` followed by
two dense layers and a softmax. Here each MFCC coefficient is standardised (statistics fit inside the
fold), the frames run along the convolution with the coefficients as channels, and the number of
blocks (1-4, its 2 by default), filters, kernel, pooling, dropout, dense width and training
settings are searched; :data:`SEED_PARAMS` is that recipe's network.

Pruned per epoch on the first fold (successive halving). Trains on a CPU; uses CUDA when present.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emotune.spaces._common import epoch_hooks

if TYPE_CHECKING:
    import optuna

    from emotune.spaces._torch import TorchClassifier

NAME = "cnn1d_mfcc"
FEATURES = "mfcc_seq"
MAX_STEPS = 40  # epochs

SEED_PARAMS: dict[str, Any] = {
    "n_blocks": 2,
    "filters": 64,
    "widen": False,
    "kernel_size": 5,
    "pool_size": 4,
    "batch_norm": False,
    "dropout": 0.2,
    "dense_units": 128,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-6,
    "batch_size": 32,
    "epochs": MAX_STEPS,
}


def __getattr__(name: str) -> Any:
    # RESOURCES is computed on first use (PEP 562): it asks torch about CUDA only on machines with a
    # GPU driver, and importing this module stays free of torch and scikit-learn.
    if name == "RESOURCES":
        from emotune.spaces import _torch

        return _torch.resources(num_cpus=1)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Blocks, filters, kernel, pooling, dropout, dense width and training settings."""
    return {
        "n_blocks": trial.suggest_int("n_blocks", 1, 4),
        "filters": trial.suggest_int("filters", 16, 128, log=True),
        "widen": trial.suggest_categorical("widen", [False, True]),
        "kernel_size": trial.suggest_int("kernel_size", 3, 9, step=2),
        "pool_size": trial.suggest_categorical("pool_size", [2, 4, 8]),
        "batch_norm": trial.suggest_categorical("batch_norm", [False, True]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "dense_units": trial.suggest_int("dense_units", 32, 512, log=True),
        "optimizer": trial.suggest_categorical("optimizer", ["sgd", "adamw"]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [8, 16, 32, 64]),
        "epochs": trial.suggest_int("epochs", 10, MAX_STEPS, step=5),
    }


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> TorchClassifier:
    """Per-coefficient scaler + conv blocks + two dense layers; missing params take :data:`SEED_PARAMS`.

    ``n_classes`` is not needed: the output width comes from the labels given to ``fit``.
    """
    from emotune.spaces import _torch

    p = {**SEED_PARAMS, **params}
    net = _torch.Conv1dNet(
        n_conv=int(p["n_blocks"]),
        channels=int(p["filters"]),
        widen=bool(p["widen"]),
        kernel_size=int(p["kernel_size"]),
        pool_every=1,
        pool_size=int(p["pool_size"]),
        batch_norm=bool(p["batch_norm"]),
        conv_dropout=float(p["dropout"]),
        fc_units=(int(p["dense_units"]),),
        fc_dropout=float(p["dropout"]),
    )
    return _torch.TorchClassifier(
        net,
        preprocess=_torch.ChannelScaler(),
        seed=seed,
        **_torch.training_kwargs(p, space=NAME, max_steps=MAX_STEPS),
    )


pruner, fit = epoch_hooks(MAX_STEPS)
