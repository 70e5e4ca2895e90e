"""1-D CNN on PCA components of the classic features (the 180-means recipe's first approach).

That recipe reduced the 180 ``classic`` features (40 MFCC, 12 chroma, 128 mel power means) with PCA to
the components keeping 95% of the variance, then trained a 1-D CNN of 8 convolution and 3 fully
connected layers with batch norm and dropout, SGD (momentum 0.9, lr 0.01), batch size 16. Here the
preprocessing (log of the mel block, standardisation, PCA 95%) is fit inside each fold and depth,
widths, batch norm, dropout, optimizer, learning rate, batch size and epochs are searched;
:data:`SEED_PARAMS` is that recipe's network.

Pruned per epoch on the first fold (successive halving). Trains on a CPU; uses CUDA when present.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emotune.spaces._common import epoch_hooks

if TYPE_CHECKING:
    import numpy as np
    import optuna

    from emotune.spaces._torch import TorchClassifier

NAME = "cnn1d_pca"
FEATURES = "classic"
MAX_STEPS = 40  # epochs
MEL_COLUMNS = slice(52, 180)  # classic layout: MFCC 0..39, chroma 40..51, mel power means 52..179
N_COLUMNS = 180

SEED_PARAMS: dict[str, Any] = {
    "n_conv": 8,
    "channels": 64,
    "widen": False,
    "kernel_size": 5,
    "pool_every": 2,
    "batch_norm": True,
    "conv_dropout": 0.1,
    "n_fc": 3,
    "fc_units": 256,
    "fc_dropout": 0.3,
    "optimizer": "sgd",
    "lr": 0.01,
    "weight_decay": 1e-6,
    "batch_size": 16,
    "epochs": MAX_STEPS,
}
PCA_VARIANCE = 0.95


def __getattr__(name: str) -> Any:
    # RESOURCES is computed on first use (PEP 562): it asks torch about CUDA only on machines with a
    # GPU driver, and importing this module stays free of torch and scikit-learn.
    if name == "RESOURCES":
        from emotune.spaces import _torch

        return _torch.resources(num_cpus=1)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def log_mel(X: np.ndarray) -> np.ndarray:
    """``classic`` rows ``[shape=(n, 180)]`` with the mel power block replaced by its natural log."""
    import numpy as np

    X = np.array(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != N_COLUMNS:
        raise ValueError(f"{NAME} expects classic features of shape (n, {N_COLUMNS}), got {X.shape}")
    X[:, MEL_COLUMNS] = np.log(np.maximum(X[:, MEL_COLUMNS], 1e-10))
    return X


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Network depth and widths, regularisation and training settings."""
    params: dict[str, Any] = {
        "n_conv": trial.suggest_int("n_conv", 1, 8),
        "channels": trial.suggest_int("channels", 8, 128, log=True),
        "widen": trial.suggest_categorical("widen", [False, True]),
        "kernel_size": trial.suggest_int("kernel_size", 3, 7, step=2),
        "pool_every": trial.suggest_int("pool_every", 1, 4),
        "batch_norm": trial.suggest_categorical("batch_norm", [True, False]),
        "conv_dropout": trial.suggest_float("conv_dropout", 0.0, 0.5),
        "n_fc": trial.suggest_int("n_fc", 1, 3),
    }
    if params["n_fc"] > 1:
        params["fc_units"] = trial.suggest_int("fc_units", 32, 512, log=True)
        params["fc_dropout"] = trial.suggest_float("fc_dropout", 0.0, 0.5)
    params["optimizer"] = trial.suggest_categorical("optimizer", ["sgd", "adamw"])
    params["lr"] = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    params["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    params["batch_size"] = trial.suggest_categorical("batch_size", [8, 16, 32, 64])
    params["epochs"] = trial.suggest_int("epochs", 10, MAX_STEPS, step=5)
    return params


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> TorchClassifier:
    """Log-mel + scaler + PCA(95%) + 1-D CNN; missing params take :data:`SEED_PARAMS` values.

    ``n_classes`` is not needed: the output width comes from the labels given to ``fit``.
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from emotune.spaces import _torch

    p = {**SEED_PARAMS, **params}
    net = _torch.Conv1dNet(
        n_conv=int(p["n_conv"]),
        channels=int(p["channels"]),
        widen=bool(p["widen"]),
        kernel_size=int(p["kernel_size"]),
        pool_every=int(p["pool_every"]),
        pool_size=2,
        batch_norm=bool(p["batch_norm"]),
        conv_dropout=float(p["conv_dropout"]),
        fc_units=_torch.halving_units(int(p["fc_units"]), int(p["n_fc"]) - 1),
        fc_dropout=float(p["fc_dropout"]),
    )
    preprocess = make_pipeline(
        FunctionTransformer(log_mel),
        StandardScaler(),
        PCA(n_components=float(p.get("pca_variance", PCA_VARIANCE)), svd_solver="full", random_state=seed),
    )
    return _torch.TorchClassifier(
        net, preprocess=preprocess, seed=seed, **_torch.training_kwargs(p, space=NAME, max_steps=MAX_STEPS)
    )


pruner, fit = epoch_hooks(MAX_STEPS)
