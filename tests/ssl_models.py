"""Tiny pretrained-encoder folders with random weights, saved as users save real ones (``save_pretrained``).

Each family's config shrunk to a few layers of width 32 (Whisper: 16), under 1 MB on disk; the
loading code that reads them is the one users run. :func:`hf_cache` lays a folder out as the local
Hugging Face cache holds a downloaded model (``models--org--name/snapshots/<rev>``, ``refs/main``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

FAMILIES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")
_CONV = {"conv_dim": (32, 32, 32), "conv_kernel": (10, 4, 4), "conv_stride": (5, 4, 4)}
_SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    **_CONV,
}


def tiny_model(folder: Path, family: str = "wavlm", seed: int = 0) -> Path:
    """Save a tiny random ``family`` encoder and its feature extractor into ``folder``; returns it."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    if family == "whisper":
        config = tf.WhisperConfig(
            d_model=16, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
            decoder_attention_heads=2, decoder_ffn_dim=32, vocab_size=64, num_mel_bins=80,
            max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1,
        )  # fmt: skip
        tf.WhisperModel(config).save_pretrained(folder)
        tf.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
        return folder
    make = {
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model, {}),
        "hubert": (tf.HubertConfig, tf.HubertModel, {}),
        "wavlm": (tf.WavLMConfig, tf.WavLMModel, {"num_buckets": 16, "max_bucket_distance": 40}),
        "data2vec-audio": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel, {"conv_pos_kernel_size": 5}),
    }
    config_class, model_class, extra = make[family]
    model_class(config_class(**_SMALL, **extra)).save_pretrained(folder)
    tf.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(folder)
    return folder


def hf_cache(hub: Path, repo_id: str, folder: Path, revision: str = "0" * 40) -> Path:
    """Lay ``folder`` out in a Hugging Face hub cache at ``hub`` as ``repo_id`` (what ``hf download`` leaves)."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for f in folder.iterdir():
        shutil.copyfile(f, snapshot / f.name)
    return snapshot
