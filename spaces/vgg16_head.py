"""Dense head on cached frozen-VGG16 bottleneck features (the 180-means recipe's second approach).

That recipe passed 224x224 mel-spectrogram images through VGG16's convolutional part (ImageNet weights,
frozen) and trained its first approach's dense head on the flattened bottleneck. Here the bottleneck is the
``vgg16_bottleneck`` feature set [shape=(25088,)]: computed once per file by ``emotune features build``
(or by the search, which builds what is missing) from the torchvision ``vgg16`` state_dict file that
``$EMOTUNE_VGG16_WEIGHTS`` names, and cached under the file's sha256. A trial standardises the features
(``StandardScaler`` fit inside each fold) and trains the dense head with torch: 1-3 layers with batch
norm and dropout, SGD or AdamW; :data:`SEED_PARAMS` is that recipe's head. No trial runs VGG16, so a trial
costs what an MLP on 25,088 inputs costs: seconds per epoch on a CPU core for RAVDESS.

The model itself needs no weights file (only the feature build does), so ``suggest`` and ``build``
work without one; a search without ``$EMOTUNE_VGG16_WEIGHTS`` stops at once, in one line. The same
network, computing the bottleneck in memory in each worker instead, is ``spec_cnn``'s
``vgg16_frozen``. Pruned per epoch on the first fold (successive halving).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emotune.spaces import spec_cnn

# The head's epochs, per-epoch reports and pruner are those of spec_cnn (its vgg16_frozen arch).
from emotune.spaces.spec_cnn import MAX_STEPS, fit, pruner

if TYPE_CHECKING:
    import optuna

    from emotune.spaces._torch import TorchClassifier

__all__ = ["FEATURES", "MAX_STEPS", "NAME", "SEED_PARAMS", "build", "fit", "pruner", "suggest"]

NAME = "vgg16_head"
FEATURES = "vgg16_bottleneck"

# The 180-means recipe's second approach (spec_cnn's vgg16_frozen): its first approach's head, dense layers of 256 and 128 units
# then the output, with batch norm and dropout, trained with SGD (momentum 0.9, lr 0.01, batch size 16).
SEED_PARAMS: dict[str, Any] = {k: v for k, v in spec_cnn.SEED_PARAMS.items() if k != "arch"}


def __getattr__(name: str) -> Any:
    # RESOURCES is computed on first use (PEP 562): it asks torch about CUDA only on machines with a
    # GPU driver, and importing this module stays free of torch and scikit-learn.
    if name == "RESOURCES":
        from emotune.spaces import _torch

        return _torch.resources(num_cpus=1)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Dense head (batch norm, depth, width, dropout) and training settings, as ``spec_cnn``'s head."""
    return spec_cnn.suggest_head(trial, MAX_STEPS)


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> TorchClassifier:
    """``StandardScaler`` + dense head on ``[shape=(n, 25088)]`` rows; missing params from :data:`SEED_PARAMS`.

    ``n_classes`` is not needed: the output width comes from the labels given to ``fit``.
    """
    from sklearn.preprocessing import StandardScaler

    from emotune.spaces import _torch

    p = {**SEED_PARAMS, **params}
    return _torch.TorchClassifier(
        _torch.MLPNet(**_torch.head_kwargs(p)),
        preprocess=StandardScaler(),
        seed=seed,
        **_torch.training_kwargs(p, space=NAME, max_steps=MAX_STEPS),
    )
