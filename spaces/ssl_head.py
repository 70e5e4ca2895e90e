"""SUPERB-style head on a pretrained encoder's pooled layers (`ssl`): softmax-learnt layer weights, then a small MLP.

The recipe of the SUPERB and EmoBox benchmarks on frozen encoders: every hidden state (input
embeddings and each layer) is combined by a learnt softmax weighting, and a small dense head reads the
result. Here the hidden states are the ``ssl`` set's per-file pooled statistics (mean and std over
time, :mod:`emotune.features._ssl`), so a trial costs what a small MLP costs: no encoder runs.
Standardised per element inside each fold (:class:`~emotune.spaces._ssl_view.StackScaler`); the layer
weights start equal and are trained with the head (:class:`~emotune.spaces._ssl_view.WeightedLayersNet`).
Searched: pooling (means, or means and stds), the head (as ``spec_cnn``'s: batch norm, depth, width,
dropout) and training (optimizer, rate, weight decay, batch size, epochs). Pruned per epoch on the
first fold (successive halving), like the other deep spaces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emotune.spaces import spec_cnn

# Epochs, per-epoch reports and the pruner are those of the other dense heads (spec_cnn, vgg16_head).
from emotune.spaces.spec_cnn import MAX_STEPS, fit, pruner

if TYPE_CHECKING:
    import optuna

    from emotune.spaces._torch import TorchClassifier

__all__ = ["DEFAULTS", "FEATURES", "MAX_STEPS", "NAME", "build", "fit", "pruner", "suggest"]

NAME = "ssl_head"
FEATURES = "ssl"

# Queued first: one hidden layer of 128, AdamW at 1e-3, means and stds of every layer.
DEFAULTS = [
    {
        "pooling": "mean+std",
        "batch_norm": False,
        "n_fc": 2,
        "fc_units": 128,
        "fc_dropout": 0.2,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 32,
        "epochs": 30,
    }
]


def __getattr__(name: str) -> Any:
    # RESOURCES is computed on first use (PEP 562), as vgg16_head's: torch is asked about CUDA only then.
    if name == "RESOURCES":
        from emotune.spaces import _torch

        return _torch.resources(num_cpus=1)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Pooling (``mean`` or ``mean+std``), then the dense head and training as ``spec_cnn``'s head."""
    params: dict[str, Any] = {"pooling": trial.suggest_categorical("pooling", ["mean", "mean+std"])}
    return {**params, **spec_cnn.suggest_head(trial, MAX_STEPS)}


def build(params: dict[str, Any], *, seed: int, n_classes: int | None = None) -> TorchClassifier:
    """``StackScaler`` + softmax layer weighting + dense head on ``[shape=(n, layers, 2 * dim)]`` rows.

    Missing params come from :data:`DEFAULTS`; ``n_classes`` is not needed (the labels give it).
    """
    from emotune.spaces import _torch
    from emotune.spaces._ssl_view import StackScaler, WeightedLayersNet

    p = {**DEFAULTS[0], **params}
    head = _torch.head_kwargs(p)
    net = WeightedLayersNet(pooling=str(p["pooling"]), **head)
    return _torch.TorchClassifier(
        net,
        preprocess=StackScaler(),
        seed=seed,
        **_torch.training_kwargs(p, space=NAME, max_steps=MAX_STEPS),
    )
