"""VGG16's frozen convolutional part: the ``vgg16_bottleneck`` feature set and the deep spaces share it.

The user supplies a torchvision ``vgg16`` state_dict file: ``$EMOTUNE_VGG16_WEIGHTS`` or an explicit
path (``--vgg16-weights``); nothing is downloaded. Its convolutional part is loaded with the first
convolution folded to one grey input channel, frozen, and applied to log-mel spectrograms shown as grey
ImageNet-normalised images (:func:`spectrogram_images`). The 7x7 adaptive average pool of its last map,
flattened, is the bottleneck [shape=(25088,)] that torchvision's classifier (and a dense head after
Keras' ``include_top=False`` + ``Flatten``) reads.

Features made with a weights file are identified by the file's sha256 (:func:`weights_sha256`), never by
its path: the same file in another place gives the same features.

torch is imported inside the functions that need it, so importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotune.features._errors import FeatureError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BOTTLENECK_DIM",
    "VGG16_WEIGHTS_ENV",
    "bottleneck",
    "bottleneck_features",
    "checked_trunk",
    "checked_weights",
    "load_vgg16_trunk",
    "spectrogram_images",
    "vgg16_trunk",
    "vgg16_weights_path",
    "weights_sha256",
]

VGG16_WEIGHTS_ENV = "EMOTUNE_VGG16_WEIGHTS"
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")
VGG16_LAYOUT += (512, 512, 512, "M", 512, 512, 512, "M")
BOTTLENECK_DIM = 512 * 7 * 7  # torchvision's avgpool output, what its classifier (and vgg16_head) reads
# One grey channel stands for the three ImageNet ones: normalise with their averaged mean/std and sum
# the first convolution's weights over its input channels (exact for a grey image; timm does the same).
IMAGE_MEAN, IMAGE_STD = 0.449, 0.226
# Pixels per forward pass of the feature build: 8 images of 224x224 (about 0.25 GB of activations).
_PASS_PIXELS = 8 * 224 * 224


def vgg16_trunk(in_channels: int = 1) -> torch.nn.Sequential:
    """VGG16's convolutional part with torchvision's layer indices (so ``features.N`` keys load)."""
    from torch import nn

    layers: list[nn.Module] = []
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = int(item)
    return nn.Sequential(*layers)


def vgg16_weights_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The VGG16 weights file: ``path`` when given, else ``$EMOTUNE_VGG16_WEIGHTS``; checked to exist.

    Raises:
        FeatureError: neither is set, or the file does not exist (one line naming the setting).
    """
    setting = "vgg16_weights" if path else VGG16_WEIGHTS_ENV
    raw = str(path) if path else os.environ.get(VGG16_WEIGHTS_ENV, "").strip()
    if not raw:
        raise FeatureError(
            f"{VGG16_WEIGHTS_ENV} is not set: point it to a local torchvision vgg16 state_dict file "
            "(e.g. vgg16-397923af.pth); emotune downloads nothing"
        )
    resolved = Path(raw).expanduser()
    if not resolved.is_file():
        raise FeatureError(f"{setting}={raw}: no such file (expected a torchvision vgg16 state_dict)")
    return resolved.resolve()


_SHAS: dict[tuple[str, int, int], str] = {}


def weights_sha256(path: str | os.PathLike[str] | None = None) -> str:
    """The sha256 of the weights file (:func:`vgg16_weights_path`), read once per process and file version.

    Returns:
        64 lowercase hex digits: the ``weights_sha256`` of ``vgg16_bottleneck`` feature params.

    Raises:
        FeatureError: no weights file (one line naming the setting).
    """
    resolved = vgg16_weights_path(path)
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _SHAS:
        digest = hashlib.sha256()
        with resolved.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _SHAS[key] = digest.hexdigest()
    return _SHAS[key]


_TRUNKS: dict[tuple[str, int, int], tuple[Any, str]] = {}


def load_vgg16_trunk(weights_path: str | os.PathLike[str] | None = None) -> tuple[torch.nn.Sequential, str]:
    """VGG16's convolutional part with the file's weights, frozen, and the file's sha256.

    Accepts a torchvision ``vgg16`` state_dict (``features.N.weight``/``bias``; ``classifier.*`` is
    ignored), also wrapped as ``{"state_dict": ...}``. The first convolution is folded to one input
    channel. Loaded once per process and file version (path, size, mtime); torch's global RNG is left
    as it was, so a seeded fit gives the same network whether or not the trunk was loaded before.

    Raises:
        FeatureError: no weights file, or not a torchvision vgg16 state_dict (one line).
    """
    import torch

    path = vgg16_weights_path(weights_path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _TRUNKS:
        return _TRUNKS[key]
    sha = weights_sha256(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise FeatureError(
            f"{path}: not a torch state_dict file ({reason}); see {VGG16_WEIGHTS_ENV}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FeatureError(
            f"{path}: holds a {type(state).__name__}, not a state_dict; see {VGG16_WEIGHTS_ENV}"
        )
    with torch.random.fork_rng(devices=[]):  # initialising layers to overwrite must not move the caller's RNG
        trunk = vgg16_trunk(in_channels=1)
    weights: dict[str, torch.Tensor] = {}
    for name, expected in trunk.state_dict().items():
        value = state.get(f"features.{name}")
        if not isinstance(value, torch.Tensor):
            raise FeatureError(
                f"{path}: no 'features.{name}': not a torchvision vgg16 state_dict ({VGG16_WEIGHTS_ENV})"
            )
        if name == "0.weight" and value.ndim == 4 and value.shape[1] == 3:
            value = value.sum(dim=1, keepdim=True)
        if tuple(value.shape) != tuple(expected.shape):
            raise FeatureError(
                f"{path}: 'features.{name}' has shape {tuple(value.shape)}, vgg16 has "
                f"{tuple(expected.shape)} (vgg16_bn and other layouts are not supported)"
            )
        weights[name] = value.float()
    trunk.load_state_dict(weights)
    trunk.eval().requires_grad_(False)
    _TRUNKS.clear()  # one file at a time: 60 MB each
    _TRUNKS[key] = (trunk, sha)
    return _TRUNKS[key]


def checked_weights(expected_sha256: str, weights_path: str | os.PathLike[str] | None = None) -> Path:
    """The weights file (:func:`vgg16_weights_path`), checked to have the sha256 ``expected_sha256``.

    Raises:
        FeatureError: no weights file, or another one (one line).
    """
    path = vgg16_weights_path(weights_path)
    sha = weights_sha256(path)
    if sha != expected_sha256:
        raise FeatureError(
            f"{path}: sha256 {sha[:16]}... differs from weights_sha256 {expected_sha256[:16]}... of the "
            f"vgg16_bottleneck params (another weights file; see {VGG16_WEIGHTS_ENV} or --vgg16-weights)"
        )
    return path


def checked_trunk(
    expected_sha256: str, weights_path: str | os.PathLike[str] | None = None
) -> torch.nn.Sequential:
    """:func:`load_vgg16_trunk` of :func:`checked_weights`.

    Raises:
        FeatureError: no weights file, another one, or not a vgg16 state_dict (one line).
    """
    trunk, _ = load_vgg16_trunk(checked_weights(expected_sha256, weights_path))
    return trunk


def spectrogram_images(X: np.ndarray) -> np.ndarray:
    """Log-mel spectrograms ``[shape=(n, h, w)]`` as grey ImageNet-normalised images, same shape.

    Each spectrogram is min-max scaled to [0, 1] on its own (a picture of it, as the 180-means recipe made), then
    normalised with :data:`IMAGE_MEAN` / :data:`IMAGE_STD`.
    """
    X = np.asarray(X, dtype=np.float32)
    axes = tuple(range(1, X.ndim))
    low = X.min(axis=axes, keepdims=True)
    span = np.maximum(X.max(axis=axes, keepdims=True) - low, 1e-6)
    return (((X - low) / span - IMAGE_MEAN) / IMAGE_STD).astype(np.float32)


def bottleneck(
    X: np.ndarray, trunk: torch.nn.Module, *, device: torch.device | str = "cpu", batch_size: int = 32
) -> np.ndarray:
    """Frozen VGG16 bottleneck: log-mel spectrograms ``[shape=(n, h, w)]`` -> ``[shape=(n, 25088)]``, float32.

    :func:`spectrogram_images`, ``trunk``, the 7x7 adaptive average pool, flatten; ``batch_size``
    images per forward pass, in inference mode. Any image size works (224x224 is VGG16's own).
    The caller sets torch's thread count; ``trunk`` is moved to ``device``.
    """
    import torch
    import torch.nn.functional as F

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(f"the VGG16 bottleneck takes (n, height, width) spectrograms, got shape {X.shape}")
    out = np.empty((len(X), BOTTLENECK_DIM), dtype=np.float32)
    trunk.to(device)
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            images = torch.from_numpy(spectrogram_images(X[start : start + batch_size])).unsqueeze(1)
            maps = F.adaptive_avg_pool2d(trunk(images.to(device)), (7, 7))
            out[start : start + batch_size] = maps.flatten(1).float().cpu().numpy()
    return out


def bottleneck_features(
    X: np.ndarray,
    weights_sha256: str,
    *,
    weights_path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    n_threads: int | None = None,
) -> np.ndarray:
    """The ``vgg16_bottleneck`` set's arrays of a batch of its ``melspec`` images (see the module doc).

    Args:
        X: [shape=(n, h, w)] log-mel images.
        weights_sha256: The params' sha256; the weights file must have it.
        weights_path: The weights file; None: ``$EMOTUNE_VGG16_WEIGHTS``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        n_threads: torch threads for the call (restored after); None leaves torch's setting.

    Returns:
        [shape=(n, 25088), float32].

    Raises:
        FeatureError: no weights file, not a vgg16 state_dict, or one with another sha256 (one line).
    """
    import torch

    trunk = checked_trunk(weights_sha256, weights_path)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    X = np.asarray(X, dtype=np.float32)
    per_pass = max(1, min(64, _PASS_PIXELS // max(1, int(np.prod(X.shape[1:])))))
    previous = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        return bottleneck(X, trunk, device=torch.device(device), batch_size=per_pass)
    finally:
        torch.set_num_threads(previous)
