"""Pretrained speech encoders: the ``ssl`` feature set (wav2vec2, HuBERT, WavLM, data2vec-audio, Whisper).

A model is a local directory in the ``save_pretrained`` layout, or a Hugging Face model id already in
the local Hugging Face cache (``$HF_HOME``, offline: ``local_files_only``). Nothing is ever downloaded:
a reference that is neither is a one-line :class:`FeatureError` naming it and saying how to fetch it
on a machine with internet.

What one file gives [shape=(layers, 2 * dim)]: for every hidden state the encoder returns (the input
embeddings first, then each transformer layer; ``layers = num_hidden_layers + 1``), its mean and its
standard deviation over time, ``[mean | std]``. Any layer can then be read without running the encoder
again; a study's ``layer`` and ``pooling`` trial parameters choose (:mod:`emotune.spaces._ssl_view`).

Invariants:

- Audio is decoded at the encoder's rate (its feature extractor's ``sampling_rate``, 16 kHz for every
  family here; soxr resampling as everywhere in emotune).
- One file at a time (a batch of one, no padding, no attention mask), so a file's features never
  depend on which files share a task: zero padding would change group-norm encoders such as
  wav2vec2-base.
- Bounded memory: wav2vec2-style encoders see the file in chunks of ``chunk_s`` seconds (default
  20 s; a remainder shorter than a quarter chunk joins the previous chunk), after the feature
  extractor normalised the whole file. A file no longer than a chunk is one pass, exactly. Pooled
  statistics of several chunks are combined by frame count (Chan et al.'s parallel variance).
- Whisper's encoder reads a fixed 30 s window: each chunk is 30 s at most (a short remainder stays
  a chunk of its own), padded by the feature extractor to 30 s; only the frames that hold audio are pooled (``ceil(samples / samples_per_frame)``).
- A file shorter than the encoder's receptive field (400 samples for the wav2vec2 family) is padded
  with zeros to it.
- The params (:data:`DEFAULTS`) hold the weights' content hash (``weights``: the sha256 of every
  weight file's name and sha256), the config's (``config``: ``config.json`` and
  ``preprocessor_config.json`` without their path and library-version fields), the family, the shape
  and the chunk length. The cache key covers them and the torch and transformers versions, not the
  ``model`` reference: the same weights in another folder are the same entries; other weights, other
  entries. Every use checks the weights against ``weights`` (:func:`checked_model_dir`).

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotune.features._errors import FeatureError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULTS",
    "FAMILIES",
    "SSL_MODEL_ENV",
    "VALIDATORS",
    "Encoder",
    "checked_model_dir",
    "encode",
    "load_encoder",
    "model_dir",
    "model_params",
    "weights_sha256",
]

SSL_MODEL_ENV = "EMOTUNE_SSL_MODEL"
# transformers' model_type of each supported family.
FAMILIES: tuple[str, ...] = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_IGNORED_CONFIG_KEYS = ("_name_or_path", "transformers_version", "processor_class", "architectures")
_MIN_SAMPLES = 400  # the wav2vec2 family's receptive field (25 ms at 16 kHz)
CHUNK_S = 20.0

DEFAULTS: dict[str, Any] = {
    "sr": 16000,
    "model": None,  # the reference as given (absolute path of a directory, or a model id): not keyed
    "family": None,
    "weights": None,
    "config": None,
    "layers": None,
    "dim": None,
    "chunk_s": CHUNK_S,
    "pooling": "mean+std",
}
UNKEYED: tuple[str, ...] = ("model",)  # params the cache key leaves out


def _required(kind: str) -> Callable[[str, str, Any], Any]:
    def check(name: str, key: str, value: Any) -> Any:
        if value is None:
            raise FeatureError(
                f"{name}: {key} is required: give the encoder with --ssl-model PATH_OR_ID (or "
                f"{SSL_MODEL_ENV}); emotune downloads nothing"
            )
        if kind == "str" and (not isinstance(value, str) or not value):
            raise FeatureError(f"{name}: {key}={value!r} must be a non-empty string")
        if kind == "hex" and not (isinstance(value, str) and len(value) >= 16 and _is_hex(value)):
            raise FeatureError(f"{name}: {key}={value!r} must be a content hash (hex digits)")
        if kind == "int" and (
            isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1
        ):
            raise FeatureError(f"{name}: {key}={value!r} must be an integer >= 1")
        if kind == "family" and value not in FAMILIES:
            raise FeatureError(f"{name}: {key}={value!r} must be one of {', '.join(FAMILIES)}")
        return int(value) if kind == "int" else value

    return check


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _chunk(name: str, key: str, value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 1.0:
        raise FeatureError(f"{name}: {key}={value!r} must be a number of seconds >= 1")
    return float(value)


def _pooling(name: str, key: str, value: Any) -> str:
    if value != "mean+std":
        raise FeatureError(f"{name}: {key}={value!r} must be 'mean+std' (the cached statistics)")
    return str(value)


VALIDATORS: dict[str, Callable[[str, str, Any], Any]] = {
    "model": _required("str"),
    "family": _required("family"),
    "weights": _required("hex"),
    "config": _required("hex"),
    "layers": _required("int"),
    "dim": _required("int"),
    "chunk_s": _chunk,
    "pooling": _pooling,
}


# --------------------------------------------------------------------------------------------------
# Finding a model (never downloading one)


def _fetch_hint(ref: str) -> str:
    return (
        f"on a machine with internet run `hf download {ref}` (or save_pretrained it to a folder), copy "
        "the Hugging Face cache or the folder here, and give --ssl-model that id or folder; emotune "
        "downloads nothing"
    )


def _reference(ref: str | os.PathLike[str] | None) -> str:
    raw = os.fspath(ref) if ref else os.environ.get(SSL_MODEL_ENV, "").strip()
    if not raw:
        raise FeatureError(
            f"ssl: no encoder given: --ssl-model PATH_OR_ID (or {SSL_MODEL_ENV}) names a local model "
            "folder or a model id in the local Hugging Face cache"
        )
    return raw


def model_dir(ref: str | os.PathLike[str] | None = None) -> tuple[str, Path]:
    """The model reference (``ref``, else ``$EMOTUNE_SSL_MODEL``) and the local folder holding it.

    A folder is used as it is; anything else is a model id looked up in the local Hugging Face cache
    only (``local_files_only``).

    Returns:
        ``(reference, folder)``: the reference is the folder's absolute path for a folder, else the id.

    Raises:
        FeatureError: no reference, or one that is neither a folder nor in the local cache (one line
            naming it and how to fetch it elsewhere).
    """
    raw = _reference(ref)
    path = Path(raw).expanduser()
    if path.is_dir():
        return str(path.resolve()), path.resolve()
    if path.exists():
        raise FeatureError(
            f"--ssl-model {raw}: a file, not a model folder (save_pretrained layout) or a model id"
        )
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(raw, local_files_only=True)
    except Exception as exc:
        kind = type(exc).__name__
        raise FeatureError(
            f"--ssl-model {raw}: no such folder, and not in the local Hugging Face cache ({kind}); "
            + _fetch_hint(raw)
        ) from None
    return raw, Path(folder)


_SHAS: dict[tuple[str, int, int], str] = {}


def _file_sha(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHAS:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _SHAS[key] = digest.hexdigest()
    return _SHAS[key]


def weights_sha256(folder: str | os.PathLike[str]) -> str:
    """The content hash of a model folder's weights: sha256 of each weight file's name and sha256.

    Weight files are the folder's ``*.safetensors``, ``*.bin``, ``*.pt`` and ``*.pth`` (symlinks of
    the Hugging Face cache followed). Read once per process and file version.

    Raises:
        FeatureError: the folder holds no weight file.
    """
    root = Path(folder)
    files = sorted(p for p in root.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    if not files:
        raise FeatureError(f"{root}: no weight file (*.safetensors or *.bin): not a saved model folder")
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.name}\t{_file_sha(p)}\n".encode())
    return digest.hexdigest()


def _config_json(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FeatureError(f"{path}: not a readable JSON file ({exc})") from None
    return {k: v for k, v in data.items() if k not in _IGNORED_CONFIG_KEYS} if isinstance(data, dict) else {}


def _config_sha(folder: Path) -> str:
    blob = json.dumps(
        {
            "config": _config_json(folder, "config.json"),
            "extractor": _config_json(folder, "preprocessor_config.json"),
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _shape(config: Any) -> tuple[int, int]:
    """(hidden states returned, their width) of an encoder config."""
    if config.model_type == "whisper":
        return int(config.encoder_layers) + 1, int(config.d_model)
    return int(config.num_hidden_layers) + 1, int(config.hidden_size)


def model_params(ref: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``ssl`` params a model gives (see :data:`DEFAULTS`): reference, family, hashes, shape, rate.

    Reads the config, the feature extractor's config and hashes the weight files; loads no weights.

    Raises:
        FeatureError: no model, one not found locally, not a speech encoder of :data:`FAMILIES`
            (one line naming it).
    """
    reference, folder = model_dir(ref)
    config = _light_config(reference, folder)
    layers, dim = _shape(config)
    sr = int(_config_json(folder, "preprocessor_config.json").get("sampling_rate", 16000))
    return {
        "sr": sr,
        "model": reference,
        "family": config.model_type,
        "weights": weights_sha256(folder),
        "config": _config_sha(folder),
        "layers": layers,
        "dim": dim,
    }


def _light_config(reference: str, folder: Path) -> Any:
    """The fields :func:`model_params` needs, from ``config.json`` itself when it holds them (as
    ``save_pretrained`` writes it): the driver of a build need not import transformers (seconds)."""
    from types import SimpleNamespace

    raw = _config_json(folder, "config.json")
    keys = (
        ("encoder_layers", "d_model")
        if raw.get("model_type") == "whisper"
        else ("num_hidden_layers", "hidden_size")
    )
    if raw.get("model_type") in FAMILIES and all(isinstance(raw.get(k), int) for k in keys):
        return SimpleNamespace(**raw)
    return _load_config(reference, folder)


def _load_config(reference: str, folder: Path) -> Any:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise FeatureError(f"--ssl-model {reference}: no usable config.json ({reason})") from None
    if config.model_type not in FAMILIES:
        raise FeatureError(
            f"--ssl-model {reference}: a {config.model_type!r} model, not a speech encoder emotune reads "
            f"({', '.join(FAMILIES)})"
        )
    return config


def checked_model_dir(params: Mapping[str, Any], ssl_model: str | os.PathLike[str] | None = None) -> Path:
    """The folder of an ``ssl`` params' model, checked to hold the weights the params were made with.

    The model is ``ssl_model``, else ``$EMOTUNE_SSL_MODEL``, else the params' own ``model`` reference
    (moved weights: point ``--ssl-model`` at them).

    Raises:
        FeatureError: no such model here, or other weights (one line).
    """
    ref = ssl_model or os.environ.get(SSL_MODEL_ENV, "").strip() or params["model"]
    reference, folder = model_dir(ref)
    sha = weights_sha256(folder)
    if sha != params["weights"]:
        raise FeatureError(
            f"ssl model {reference}: its weights (sha256 {sha[:12]}) are not the ones these features were "
            f"made with ({str(params['weights'])[:12]}, model {params['model']}); give --ssl-model the "
            "original weights"
        )
    return folder


# --------------------------------------------------------------------------------------------------
# Encoding


class Encoder:
    """A loaded encoder (eval mode, frozen) and its feature extractor; see :func:`load_encoder`."""

    def __init__(self, model: Any, extractor: Any, family: str, device: str) -> None:
        self.model, self.extractor, self.family, self.device = model, extractor, family, device


_ENCODERS: dict[tuple[str, str], Encoder] = {}


def load_encoder(folder: str | os.PathLike[str], *, device: str = "cpu") -> Encoder:
    """The encoder of a local model folder, loaded once per process and folder (one at a time).

    Whisper models keep their encoder only. Offline: ``local_files_only``, nothing downloaded.

    Raises:
        FeatureError: not a supported speech encoder, or its files cannot be loaded (one line).
    """
    key = (str(Path(folder).resolve()), device)
    if key in _ENCODERS:
        return _ENCODERS[key]
    import torch
    import transformers
    from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor

    transformers.logging.set_verbosity_error()  # its notes and progress bars are not the user's business
    transformers.logging.disable_progress_bar()
    config = _load_config(str(folder), Path(folder))
    try:
        with torch.random.fork_rng(devices=[]):  # initialising layers must not move the caller's RNG
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise FeatureError(f"--ssl-model {folder}: the weights cannot be loaded ({reason})") from None
    if config.model_type == "whisper":
        model = model.get_encoder()
    try:
        extractor = AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    except Exception:
        if config.model_type == "whisper":
            raise FeatureError(
                f"--ssl-model {folder}: no preprocessor_config.json (Whisper needs its feature extractor)"
            ) from None
        # wav2vec2-style encoders with layer-norm feature extractors were trained on normalised input.
        extractor = Wav2Vec2FeatureExtractor(
            sampling_rate=16000, do_normalize=getattr(config, "feat_extract_norm", "") == "layer"
        )
    model.eval().requires_grad_(False).to(device)
    _ENCODERS.clear()
    _ENCODERS[key] = Encoder(model, extractor, config.model_type, device)
    return _ENCODERS[key]


def _chunks(n: int, size: int, *, join_short: bool = True) -> list[tuple[int, int]]:
    """``[start, end)`` spans of ``size`` samples; with ``join_short`` a remainder under a quarter chunk
    joins the last one (which may then reach 1.25 x ``size``), else it is a chunk of its own."""
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end = min(n, start + size)
        if join_short and bounds and end - start < size / 4:
            bounds[-1] = (bounds[-1][0], end)
        else:
            bounds.append((start, end))
        start = end
    return bounds or [(0, n)]


def _hidden_states(enc: Encoder, piece: np.ndarray, sr: int) -> tuple[list[torch.Tensor], int]:
    """Every hidden state ``[shape=(frames, dim)]`` of one piece of audio, and how many frames hold audio."""
    import torch

    if enc.family == "whisper":
        feats = enc.extractor(piece, sampling_rate=sr, return_tensors="pt").input_features
        out = enc.model(feats.to(enc.device), output_hidden_states=True)
        total = out.hidden_states[0].shape[1]
        per_frame = enc.extractor.n_samples / total
        valid = max(1, min(total, math.ceil(len(piece) / per_frame)))
    else:
        values = torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32))[None]
        out = enc.model(values.to(enc.device), output_hidden_states=True)
        valid = out.hidden_states[0].shape[1]
    return [h[0, :valid].double() for h in out.hidden_states], valid


def encode(
    y: np.ndarray,
    params: Mapping[str, Any],
    *,
    ssl_model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    n_threads: int | None = None,
) -> np.ndarray:
    """One file's ``ssl`` array: every hidden state's mean and std over time.

    Args:
        y: [shape=(n,)] mono audio at ``params["sr"]``.
        params: Validated ``ssl`` params.
        ssl_model: The model (None: ``$EMOTUNE_SSL_MODEL``, else the params' reference); checked by
            content against the params.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        n_threads: torch threads for the call (restored after); None leaves torch's setting.

    Returns:
        [shape=(layers, 2 * dim), float32] ``[mean | std]`` per hidden state.

    Raises:
        FeatureError: the model is missing or other weights, or the shapes disagree with the params.
    """
    import torch

    folder = checked_model_dir(params, ssl_model)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    enc = load_encoder(folder, device=device)
    previous = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        with torch.inference_mode():
            return _pooled(enc, np.asarray(y, dtype=np.float32), params)
    finally:
        torch.set_num_threads(previous)


def _pooled(enc: Encoder, y: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    sr = int(params["sr"])
    join_short = enc.family != "whisper"  # Whisper's window is fixed: no chunk may exceed it
    if enc.family == "whisper":
        size = int(enc.extractor.n_samples)
    else:
        if len(y) < _MIN_SAMPLES:
            y = np.pad(y, (0, _MIN_SAMPLES - len(y)))
        # Normalised over the whole file (when the extractor normalises), then cut into chunks.
        y = np.asarray(
            enc.extractor(y, sampling_rate=sr, return_tensors="np").input_values[0], dtype=np.float32
        )
        size = int(round(float(params["chunk_s"]) * sr))
    count = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    for a, b in _chunks(len(y), size, join_short=join_short):
        states, frames = _hidden_states(enc, y[a:b], sr)
        stacked = torch_stack(states)  # (layers, frames, dim)
        c_mean = stacked.mean(axis=1)
        c_m2 = ((stacked - c_mean[:, None, :]) ** 2).sum(axis=1)
        if mean is None or m2 is None:
            count, mean, m2 = frames, c_mean, c_m2
            continue
        total = count + frames
        delta = c_mean - mean
        mean = mean + delta * (frames / total)
        m2 = m2 + c_m2 + delta**2 * (count * frames / total)
        count = total
    assert mean is not None and m2 is not None
    if mean.shape != (params["layers"], params["dim"]):
        raise FeatureError(
            f"ssl: the encoder gives {mean.shape[0]} hidden states of width {mean.shape[1]}, the params say "
            f"{params['layers']} x {params['dim']}"
        )
    std = np.sqrt(m2 / count)
    return np.concatenate([mean, std], axis=1).astype(np.float32)


def torch_stack(states: list[Any]) -> np.ndarray:
    """Hidden states (torch tensors of one shape) as one float64 array ``[shape=(layers, frames, dim)]``."""
    return np.stack([s.cpu().numpy() for s in states]).astype(np.float64)
