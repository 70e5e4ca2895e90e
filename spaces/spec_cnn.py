"""VGG-style CNN on log-mel spectrogram images (the 180-means recipe's second approach).

That recipe fed 224x224 mel-spectrogram images to VGG16's convolutional part (ImageNet weights, frozen)
and trained its approach-1 dense head on the bottleneck. Architectures (``arch``):

- ``vgg_small`` (the default search): 2-4 VGG blocks of 8-16 (doubling) channels on per-band
  standardised ``melspec`` at half or quarter resolution; on one CPU core about 2 s (default) to
  7 s (largest) per epoch for 1,152 training rows of 128x128 (``benchmarks/deep.py``).
- ``vgg16_frozen``: that recipe's. VGG16's convolutional part with weights from a local torchvision
  ``vgg16`` state_dict (``$EMOTUNE_VGG16_WEIGHTS`` or the ``vgg16_weights`` param; nothing is
  downloaded), frozen; only the dense head trains. Bottleneck features are computed once per row and
  worker process, in memory (:func:`bottleneck_features`). Heavy on a CPU (seconds per spectrogram),
  fine on a GPU. The cached route to the same model is the ``vgg16_head`` space on the
  ``vgg16_bottleneck`` feature set: the bottleneck is computed once per file by the feature build
  and kept in the feature cache, and trials only train the head.
- ``vgg16_finetune``: the same network trained end to end (the convolutional part at a tenth of the
  learning rate). GPU only in practice.

:func:`suggest` offers the VGG16 architectures only when ``$EMOTUNE_VGG16_WEIGHTS`` is set, and
``vgg16_finetune`` only where a GPU is visible too (``RESOURCES`` has ``num_gpus``). The choices are a
function of the environment, so every worker of a study needs the same setting (Optuna refuses a
categorical parameter whose choices change within a study). Pruned per epoch on the first fold
(successive halving).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from emotune.spaces._common import epoch_hooks

if TYPE_CHECKING:
    import numpy as np
    import optuna

    from emotune.spaces._torch import TorchClassifier

NAME = "spec_cnn"
FEATURES = "melspec"
MAX_STEPS = 30  # epochs
WEIGHTS_ENV = "EMOTUNE_VGG16_WEIGHTS"  # same as emotune.spaces._torch.VGG16_WEIGHTS_ENV

DEFAULTS: dict[str, Any] = {
    "arch": "vgg_small",
    "n_blocks": 3,
    "channels": 16,
    "convs_per_block": 1,
    "downsample": 2,
    "batch_norm": True,
    "conv_dropout": 0.1,
    "n_fc": 2,
    "fc_units": 128,
    "fc_dropout": 0.3,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "batch_size": 32,
    "epochs": MAX_STEPS,
}
# The 180-means recipe's second approach: frozen VGG16 bottleneck + its first approach's head and training.
SEED_PARAMS: dict[str, Any] = {
    "arch": "vgg16_frozen",
    "batch_norm": True,
    "n_fc": 3,
    "fc_units": 256,
    "fc_dropout": 0.3,
    "optimizer": "sgd",
    "lr": 0.01,
    "weight_decay": 1e-6,
    "batch_size": 16,
    "epochs": MAX_STEPS,
}


def __getattr__(name: str) -> Any:
    # RESOURCES is computed on first use (PEP 562): it asks torch about CUDA only on machines with a
    # GPU driver, and importing this module stays free of torch and scikit-learn.
    if name == "RESOURCES":
        from emotune.spaces import _torch

        return _torch.resources(num_cpus=1)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def architectures() -> list[str]:
    """The ``arch`` choices this environment offers (see the module docstring)."""
    if not os.environ.get(WEIGHTS_ENV, "").strip():
        return ["vgg_small"]
    from emotune.spaces import _torch

    return ["vgg_small", "vgg16_frozen"] + (["vgg16_finetune"] if _torch.gpu_share() > 0 else [])


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Architecture (and the small variants' shape), dense head and training settings."""
    params: dict[str, Any] = {"arch": trial.suggest_categorical("arch", architectures())}
    if params["arch"] == "vgg_small":
        params["n_blocks"] = trial.suggest_int("n_blocks", 2, 4)
        params["channels"] = trial.suggest_int("channels", 8, 16, step=4)
        params["convs_per_block"] = trial.suggest_int("convs_per_block", 1, 2)
        # Full resolution costs 4x (16 s per epoch on one core for 1,152 rows with the default
        # network): searched at half and quarter resolution; 1 stays available as a param.
        params["downsample"] = trial.suggest_categorical("downsample", [2, 4])
        params["conv_dropout"] = trial.suggest_float("conv_dropout", 0.0, 0.5)
    return {**params, **suggest_head(trial, MAX_STEPS)}


def suggest_head(trial: optuna.trial.BaseTrial, max_steps: int) -> dict[str, Any]:
    """The dense head (batch norm; 1-3 layers, widths and dropout when hidden ones exist) and training.

    Optimizer (SGD or AdamW), learning rate (1e-4..0.1, log), weight decay (1e-6..0.01, log), batch
    size (8-64) and epochs (10..``max_steps`` by 5). Shared with ``vgg16_head``.
    """
    params: dict[str, Any] = {"batch_norm": trial.suggest_categorical("batch_norm", [True, False])}
    params["n_fc"] = trial.suggest_int("n_fc", 1, 3)
    if params["n_fc"] > 1:
        params["fc_units"] = trial.suggest_int("fc_units", 32, 512, log=True)
        params["fc_dropout"] = trial.suggest_float("fc_dropout", 0.0, 0.5)
    params["optimizer"] = trial.suggest_categorical("optimizer", ["sgd", "adamw"])
    params["lr"] = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    params["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    params["batch_size"] = trial.suggest_categorical("batch_size", [8, 16, 32, 64])
    params["epochs"] = trial.suggest_int("epochs", 10, max_steps, step=5)
    return params


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> TorchClassifier:
    """The classifier for ``params`` (missing ones from :data:`DEFAULTS`, the default small variant).

    Raises:
        EmotuneError: a VGG16 architecture without a weights file (one line naming the setting).
    """
    from emotune.spaces import _torch

    p = {**DEFAULTS, **params}
    arch = p["arch"]
    head = _torch.head_kwargs(p)
    training = _torch.training_kwargs(p, space=NAME, max_steps=MAX_STEPS)
    if arch == "vgg_small":
        net = _torch.SmallVGG(
            n_blocks=int(p["n_blocks"]),
            channels=int(p["channels"]),
            convs_per_block=int(p["convs_per_block"]),
            downsample=int(p["downsample"]),
            conv_dropout=float(p["conv_dropout"]),
            **head,
        )
        return _torch.TorchClassifier(net, preprocess=_torch.ChannelScaler(), seed=seed, **training)
    if arch not in ("vgg16_frozen", "vgg16_finetune"):
        raise _torch.user_error(
            f"{NAME}: arch={arch!r} is not one of vgg_small, vgg16_frozen, vgg16_finetune"
        )
    weights = p.get("vgg16_weights")  # None: the environment variable, read where the model runs
    _torch.vgg16_weights_path(weights)  # fail now, in one line, when the file is missing
    if arch == "vgg16_frozen":
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        preprocess = make_pipeline(_torch.VGG16Bottleneck(weights_path=weights), StandardScaler())
        return _torch.TorchClassifier(_torch.MLPNet(**head), preprocess=preprocess, seed=seed, **training)
    net = _torch.VGG16Net(weights_path=weights, **head)
    return _torch.TorchClassifier(
        net, preprocess=_torch.SpectrogramImage(), seed=seed, eval_batch_size=32, **training
    )


def bottleneck_features(
    X: np.ndarray, weights_path: str | None = None, batch_size: int = 32, *, device: str = "auto"
) -> np.ndarray:
    """Frozen VGG16 bottleneck of log-mel spectrograms: ``[shape=(n, h, w)]`` -> ``[shape=(n, 25088)]``.

    Spectrograms are min-max scaled per image, normalised like ImageNet grey images, passed through
    VGG16's convolutional part and its 7x7 adaptive average pool, and flattened. A pure function of
    (``X``, the weights file's sha256, this code): the ``vgg16_bottleneck`` feature set caches it.

    Args:
        X: ``melspec`` arrays (224x224 as the recipe; 128x128 works too).
        weights_path: a torchvision ``vgg16`` state_dict file; None: ``$EMOTUNE_VGG16_WEIGHTS``.
        batch_size: images per forward pass.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...

    Raises:
        EmotuneError: no weights file (one line naming the setting), or not a vgg16 state_dict.
    """
    from emotune.spaces import _torch

    return _torch.VGG16Bottleneck(
        weights_path=weights_path, batch_size=batch_size, device=device
    ).fit_transform(X)


pruner, fit = epoch_hooks(MAX_STEPS)
