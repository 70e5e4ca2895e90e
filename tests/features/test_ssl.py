"""The ``ssl`` feature set: pretrained speech encoders' hidden states pooled per file, built by the Ray actor pool.

Tiny random encoders of every family (tests/ssl_models.py) saved to temporary folders and to a
temporary Hugging Face cache: the loading and encoding code is the one users run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ssl_models import FAMILIES, hf_cache, tiny_model

from emotune.features import FeatureError, build, default_params, extract_file, load, read_audio, scan
from emotune.features._cache import params_key
from emotune.features._sets import feature_shape
from emotune.features._ssl import SSL_MODEL_ENV, _chunks, _hidden_states, encode, load_encoder, model_dir


@pytest.fixture(scope="module", autouse=True)
def _disconnect_ray():
    """Builds here attach this process to the session's Ray; detach before the cluster stops."""
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


@pytest.fixture(autouse=True)
def _no_model_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say which model they use."""
    monkeypatch.delenv(SSL_MODEL_ENV, raising=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random encoder folder per family (seed 0), and ``wavlm-1`` with other weights (seed 1)."""
    root = tmp_path_factory.mktemp("ssl-models")
    out = {family: tiny_model(root / family, family) for family in FAMILIES}
    out["wavlm-1"] = tiny_model(root / "wavlm-1", "wavlm", seed=1)
    return out


@pytest.fixture(scope="module")
def files(data_dir: Path) -> list[Path]:
    """Six real RAVDESS recordings of two actors."""
    ravdess = data_dir / "ravdess"
    return sorted((ravdess / "Actor_01").glob("*.wav"))[:3] + sorted((ravdess / "Actor_02").glob("*.wav"))[:3]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_gives_each_hidden_state_as_mean_and_std(family, models, files):
    params = default_params("ssl", ssl_model=models[family])
    config = json.loads((models[family] / "config.json").read_text())
    layers = config.get("num_hidden_layers", config.get("encoder_layers")) + 1  # + the input embeddings
    dim = config.get("hidden_size", config.get("d_model"))
    assert (params["family"], params["layers"], params["dim"], params["sr"]) == (family, layers, dim, 16000)
    assert feature_shape(params) == (layers, 2 * dim)
    (first,) = extract_file(files[0], [params])
    (again,) = extract_file(files[0], [params])
    (other,) = extract_file(files[3], [params])
    assert first.shape == (layers, 2 * dim) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)  # deterministic
    assert (first[:, dim:] >= 0).all() and first[:, dim:].max() > 0  # the std half
    assert not np.allclose(first, other)  # the files differ


def test_whisper_pools_only_the_frames_that_hold_audio(models, files):
    params = default_params("ssl", ssl_model=models["whisper"])
    y = read_audio(files[0], sr=16000)
    enc = load_encoder(models["whisper"], device="cpu")
    import torch

    with torch.inference_mode():
        states, valid = _hidden_states(enc, y, 16000)
        padded = enc.model(enc.extractor(y, sampling_rate=16000, return_tensors="pt").input_features,
                           output_hidden_states=True).hidden_states  # fmt: skip
    assert padded[0].shape[1] == 1500  # Whisper's fixed 30 s window
    assert valid == math.ceil(len(y) / 320) < 1500 and states[0].shape[0] == valid
    stack = np.stack([s.numpy() for s in states])
    expected = np.concatenate([stack.mean(axis=1), stack.std(axis=1)], axis=1)
    got = encode(y, params, device="cpu")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    everything = np.stack([h[0].double().numpy() for h in padded]).mean(axis=1)
    assert not np.allclose(got[:, : params["dim"]], everything, atol=1e-3)  # padding left out


def test_whisper_reads_a_long_file_in_windows_of_30_s_at_most(models):
    params = default_params("ssl", ssl_model=models["whisper"])
    y = np.random.default_rng(0).normal(scale=0.1, size=16000 * 33).astype(np.float32)  # 33 s
    assert _chunks(len(y), 480000, join_short=False) == [(0, 480000), (480000, len(y))]  # no 33 s window
    enc = load_encoder(models["whisper"], device="cpu")
    import torch

    with torch.inference_mode():
        parts = [_hidden_states(enc, y[a:b], 16000) for a, b in ((0, 480000), (480000, len(y)))]
    assert [valid for _, valid in parts] == [1500, math.ceil(48000 / 320)]
    stack = np.concatenate([np.stack([s.numpy() for s in states]) for states, _ in parts], axis=1)
    expected = np.concatenate([stack.mean(axis=1), stack.std(axis=1)], axis=1)
    np.testing.assert_allclose(encode(y, params, device="cpu"), expected, rtol=1e-5, atol=1e-6)


def test_a_file_shorter_than_a_chunk_is_one_pass_and_chunks_combine_exactly(models, files):
    params = default_params("ssl", ssl_model=models["wavlm"])
    y = read_audio(files[0], sr=16000)
    assert 3 < len(y) / 16000 < 4
    one_pass = encode(y, params, device="cpu")
    np.testing.assert_array_equal(encode(y, {**params, "chunk_s": 4.0}, device="cpu"), one_pass)

    chunked = encode(y, {**params, "chunk_s": 1.0}, device="cpu")
    assert not np.allclose(chunked, one_pass)  # chunks see less context: another (stated) result
    enc = load_encoder(models["wavlm"], device="cpu")
    normalised = enc.extractor(y, sampling_rate=16000, return_tensors="np").input_values[0]
    spans = _chunks(len(normalised), 16000)
    assert [b - a for a, b in spans[:-1]] == [16000] * (len(spans) - 1) and spans[-1][1] == len(y)
    assert spans[-1][1] - spans[-1][0] >= 4000  # a remainder under a quarter chunk joins the last one
    assert _chunks(16000 * 3 + 3999, 16000)[-1] == (32000, 16000 * 3 + 3999)
    import torch

    with torch.inference_mode():
        frames = [
            np.stack([s.numpy() for s in _hidden_states(enc, normalised[a:b], 16000)[0]]) for a, b in spans
        ]
    stack = np.concatenate(frames, axis=1)  # every chunk's frames: pooled at once
    expected = np.concatenate([stack.mean(axis=1), stack.std(axis=1)], axis=1)
    np.testing.assert_allclose(chunked, expected, rtol=1e-5, atol=1e-6)


def test_ray_build_on_two_workers_equals_encoding_each_file_alone_and_keys_on_content(
    models, files, tmp_path, ray_address
):
    cache = tmp_path / "cache"
    rows = scan(files, corpus="ravdess").rows
    params = default_params("ssl", ssl_model=models["wavlm"])
    cold = build(rows, params=[params], cache_dir=cache, ray_address=ray_address, progress=False)
    assert (cold.files, cold.built, cold.failed) == (6, 6, [])
    assert "compute_ssl" in cold.timings and cold.timings["worker_cpu"] > 0  # computed by the actors
    X = load(rows, params, scheme="emotion", cache_dir=cache).X
    assert X.shape == (6, 4, 64)
    for row, f in zip(X, files, strict=True):  # alone, in this process, as predict computes it
        np.testing.assert_allclose(row, extract_file(f, [params])[0], rtol=1e-5, atol=1e-6)

    # The same weights in another folder: the same entries, nothing computed.
    moved = tmp_path / "moved"
    shutil.copytree(models["wavlm"], moved)
    same = default_params("ssl", ssl_model=moved)
    assert same["model"] == str(moved) and params_key(same) == params_key(params)
    again = build(
        rows, params=[same], cache_dir=cache, ray_address=ray_address, progress=False, ssl_model=moved
    )
    assert (again.built, again.cached) == (0, 6)

    # Other weights: another key, computed again, other numbers.
    other = default_params("ssl", ssl_model=models["wavlm-1"])
    assert other["weights"] != params["weights"] and params_key(other) != params_key(params)
    recomputed = build(rows, sets=["ssl"], cache_dir=cache, ray_address=ray_address, progress=False,
                       ssl_model=models["wavlm-1"])  # fmt: skip
    assert (recomputed.built, recomputed.cached) == (6, 0)
    assert not np.allclose(load(rows, other, scheme="emotion", cache_dir=cache).X, X)

    # A chunk length is part of the key; the set is never in `all`.
    assert params_key({**params, "chunk_s": 10.0}) != params_key(params)
    assert (
        "ssl"
        not in build(rows[:1], sets="all", cache_dir=cache, ray_address=ray_address, progress=False).sets
    )


def test_params_made_elsewhere_refuse_other_weights_in_one_line(models, files, tmp_path, ray_address):
    params = default_params("ssl", ssl_model=models["wavlm"])
    y = read_audio(files[0], sr=16000)
    with pytest.raises(FeatureError, match=r"ssl model .*wavlm-1: its weights .* are not the ones") as info:
        encode(y, params, ssl_model=models["wavlm-1"])
    assert "\n" not in str(info.value)
    rows = scan(files[:2], corpus="ravdess").rows
    with pytest.raises(FeatureError, match="are not the ones"):
        build(rows, params=[params], cache_dir=tmp_path / "c", ray_address=ray_address, progress=False,
              ssl_model=models["wavlm-1"])  # fmt: skip
    assert not (tmp_path / "c").exists()  # refused before the cache was even opened


def test_missing_empty_or_non_speech_models_are_one_line_errors(tmp_path):
    with pytest.raises(FeatureError, match=r"--ssl-model nobody/nothing: no such folder, and not in the local "
                       r"Hugging Face cache .*hf download nobody/nothing"):  # fmt: skip
        model_dir("nobody/nothing")
    with pytest.raises(
        FeatureError, match=f"no encoder given: --ssl-model PATH_OR_ID \\(or {SSL_MODEL_ENV}\\)"
    ):
        default_params("ssl")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "wavlm"}))
    with pytest.raises(FeatureError, match=r"no weight file"):
        default_params("ssl", ssl_model=empty)
    from transformers import BertConfig, BertModel

    text = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=50)).save_pretrained(text)  # fmt: skip
    with pytest.raises(FeatureError, match=r"a 'bert' model, not a speech encoder emotune reads"):
        default_params("ssl", ssl_model=text)


def test_cli_builds_from_the_local_hugging_face_cache_offline_and_names_a_missing_model(
    models, files, tmp_path, run_cli
):
    hub = tmp_path / "hub"
    hf_cache(hub, "someone/tiny-wavlm", models["wavlm"])
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "EMOTUNE_HOME": str(tmp_path / "home"),
    }
    env.pop(SSL_MODEL_ENV, None)
    folder = files[0].parent
    ok = run_cli("features", "build", folder, "--set", "ssl", "--ssl-model", "someone/tiny-wavlm", "--json",
                 "--num-cpus", "1", env=env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["failed"] == [] and report["built"] == report["files"] > 0 and report["sets"] == ["ssl"]
    missing = run_cli("features", "build", folder, "--set", "ssl", "--ssl-model", "someone/not-here", env=env)
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert missing.returncode == 1 and len(lines) == 1 and "Traceback" not in missing.stderr
    assert "someone/not-here" in lines[0] and "hf download" in lines[0]
