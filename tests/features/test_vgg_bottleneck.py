"""The ``vgg16_bottleneck`` feature set: computed by the Ray build, cached under the weights' sha256.

Random-weights VGG16 files (``vgg16_weights_file`` in tests/conftest.py) and small images (32x32; the
CLI test uses VGG16's 224x224 on two files) keep it to seconds on one CPU core.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from emotune.features import (
    FeatureError,
    _cache,
    build,
    default_params,
    extract_file,
    feature_columns,
    feature_params,
    load,
    scan,
)
from emotune.features._cache import params_key
from emotune.features._sets import feature_shape
from emotune.features._vgg import VGG16_WEIGHTS_ENV

SMALL = {"size": [32, 32]}


@pytest.fixture(scope="module", autouse=True)
def _disconnect_ray():
    """Builds here attach this process to the session's Ray; detach before the cluster stops."""
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()


@pytest.fixture(autouse=True)
def _no_weights_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests say which weights file they use; the session's Ray workers never had the variable."""
    monkeypatch.delenv(VGG16_WEIGHTS_ENV, raising=False)


@pytest.fixture(scope="module")
def files(data_dir: Path) -> list[Path]:
    """Six real RAVDESS recordings of two actors."""
    ravdess = data_dir / "ravdess"
    return sorted((ravdess / "Actor_01").glob("*.wav"))[:3] + sorted((ravdess / "Actor_02").glob("*.wav"))[:3]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_params_need_the_weights_sha256_and_key_it_with_torch(
    vgg16_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FeatureError, match=VGG16_WEIGHTS_ENV) as info:
        feature_params("vgg16_bottleneck")
    assert "\n" not in str(info.value)
    with pytest.raises(FeatureError, match="64 lowercase hex"):
        feature_params("vgg16_bottleneck", weights_sha256="abc")

    params = default_params("vgg16_bottleneck", vgg16_weights=vgg16_weights)
    assert params["weights_sha256"] == sha256(vgg16_weights)
    assert params["size"] == [224, 224] and (params["n_mels"], params["top_db"]) == (128, 80.0)
    assert json.loads(json.dumps(params)) == params and str(vgg16_weights) not in json.dumps(params)
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(vgg16_weights))
    assert default_params("vgg16_bottleneck") == params
    assert feature_shape(params) == (25088,) and len(feature_columns(params)) == 25088

    # torch's version is in this set's key only: the other sets' keys are computed as before.
    melspec = feature_params("melspec")
    old_formula = json.dumps(
        {"params": melspec, "libraries": _cache.library_versions(), "schema": _cache._SCHEMA},
        sort_keys=True,
        separators=(",", ":"),
    )
    assert params_key(melspec) == hashlib.sha256(old_formula.encode()).hexdigest()[:32]
    before = params_key(params)
    real = _cache._versions
    monkeypatch.setattr(
        _cache, "_versions", lambda names: {**real(names), **{n: "0.0" for n in names if n == "torch"}}
    )
    assert params_key(params) != before  # another torch
    assert params_key(melspec) == hashlib.sha256(old_formula.encode()).hexdigest()[:32]


def test_ray_build_equals_the_bottleneck_of_the_cached_melspec(
    files: list[Path], vgg16_weights: Path, vgg16_weights_file, tmp_path: Path, ray_address: str
) -> None:
    from emotune.spaces._torch import VGG16Bottleneck

    cache = tmp_path / "cache"
    rows = scan(files, corpus="ravdess").rows
    vgg = default_params("vgg16_bottleneck", vgg16_weights=vgg16_weights, **SMALL)
    melspec = feature_params("melspec", **SMALL)
    cold = build(rows, params=[vgg, melspec], cache_dir=cache, progress=False, vgg16_weights=vgg16_weights)
    assert (cold.files, cold.built, cold.failed) == (6, 6, [])
    assert "ray_start" in cold.timings and cold.timings["worker_cpu"] > 0  # computed by Ray tasks

    bottleneck = load(rows, vgg, scheme="emotion", cache_dir=cache)
    images = load(rows, melspec, scheme="emotion", cache_dir=cache)
    assert bottleneck.hashes == images.hashes and bottleneck.X.shape == (6, 25088)
    assert bottleneck.X.dtype == np.float32 and np.isfinite(bottleneck.X).all()
    expected = VGG16Bottleneck(weights_path=str(vgg16_weights), device="cpu").fit_transform(images.X)
    np.testing.assert_allclose(bottleneck.X, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert np.ptp(bottleneck.X, axis=0).max() > 0  # the files differ

    # Warm: nothing computed, no Ray.
    warm = build(rows, params=[vgg, melspec], cache_dir=cache, progress=False, vgg16_weights=vgg16_weights)
    assert (warm.built, warm.cached) == (0, 6) and "ray_start" not in warm.timings

    # The same file elsewhere is the same features: its path is in no key.
    moved = tmp_path / "elsewhere" / "weights.bin"
    moved.parent.mkdir()
    shutil.copyfile(vgg16_weights, moved)
    same = default_params("vgg16_bottleneck", vgg16_weights=moved, **SMALL)
    assert same == vgg
    again = build(rows, params=[same], cache_dir=cache, progress=False, vgg16_weights=moved)
    assert (again.built, again.cached) == (0, 6)

    # Other weights: another key, computed again, other numbers.
    other_file = vgg16_weights_file(1)
    other = default_params("vgg16_bottleneck", vgg16_weights=other_file, **SMALL)
    assert other["weights_sha256"] != vgg["weights_sha256"] and params_key(other) != params_key(vgg)
    recomputed = build(rows, params=[other], cache_dir=cache, progress=False, vgg16_weights=other_file)
    assert (recomputed.built, recomputed.cached) == (6, 0)
    other_X = load(rows, other, scheme="emotion", cache_dir=cache).X
    assert not np.allclose(other_X, bottleneck.X)

    # extract_file (one file, in this process) agrees with the cache.
    (single,) = extract_file(files[0], [vgg], vgg16_weights=vgg16_weights)
    row = bottleneck.hashes.index(sha256(files[0]))
    np.testing.assert_allclose(single, bottleneck.X[row], rtol=1e-4, atol=1e-5 * np.abs(single).max())


def test_other_or_missing_weights_fail_the_build_in_one_line(
    files: list[Path],
    vgg16_weights: Path,
    vgg16_weights_file,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vgg = default_params("vgg16_bottleneck", vgg16_weights=vgg16_weights, **SMALL)
    other_file = vgg16_weights_file(1)
    for weights, match in [
        (other_file, "differs from weights_sha256"),
        (tmp_path / "absent.pth", "no such file"),
    ]:
        with pytest.raises(FeatureError, match=match) as info:
            build(
                files[:2], params=[vgg], cache_dir=tmp_path / "cache", progress=False, vgg16_weights=weights
            )
        assert "\n" not in str(info.value)
    with pytest.raises(FeatureError, match=VGG16_WEIGHTS_ENV) as info:  # neither a path nor the variable
        build(files[:2], sets=["vgg16_bottleneck"], cache_dir=tmp_path / "cache", progress=False)
    assert "\n" not in str(info.value)
    monkeypatch.setenv(VGG16_WEIGHTS_ENV, str(other_file))
    with pytest.raises(FeatureError, match="differs from weights_sha256"):
        extract_file(files[0], [vgg])

    # Inside a task (a node without the file): the batch raises, it records no per-file failure.
    with pytest.raises(FeatureError, match="no such file"):
        _cache._extract_batch([(str(files[0]), None)], [vgg], str(tmp_path / "absent.pth"))


def test_a_file_that_does_not_decode_fails_alone(
    data_dir: Path, vgg16_weights: Path, tmp_path: Path, ray_address: str
) -> None:
    folder = tmp_path / "Actor_01"
    folder.mkdir()
    source = data_dir / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.wav"
    shutil.copyfile(source, folder / source.name)
    (folder / "03-01-05-02-01-01-01.wav").write_text("not audio at all\n")
    vgg = default_params("vgg16_bottleneck", vgg16_weights=vgg16_weights, **SMALL)
    report = build(
        [folder], params=[vgg], cache_dir=tmp_path / "cache", progress=False, vgg16_weights=vgg16_weights
    )
    assert report.built == 1 and [Path(f["path"]).name for f in report.failed] == ["03-01-05-02-01-01-01.wav"]

    # The same in one task: the good file's bottleneck is computed, the bad one is a failure.
    items = [(str(p), None) for p in sorted(folder.iterdir())]
    results, _ = _cache._extract_batch(items, [vgg], str(vgg16_weights))
    (good_path, _, good, _, _), (_, _, bad, reason, _) = results
    assert good_path.endswith(source.name) and bad is None and reason
    dtype, shape, data = good[0]
    assert shape == "25088" and np.isfinite(np.frombuffer(data, dtype)).all()


def test_cli_builds_the_seed_size_and_fails_in_one_line_without_weights(
    run_cli, files: list[Path], vgg16_weights: Path, tmp_path: Path, ray_address: str
) -> None:
    import os

    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != VGG16_WEIGHTS_ENV}
    missing = run_cli("features", "build", *files[:2], "--set", "vgg16_bottleneck", "--cache", cache, env=env)
    assert missing.returncode == 1 and VGG16_WEIGHTS_ENV in missing.stderr
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("emotune: error:")

    built = run_cli(
        "features", "build", *files[:2], "--set", "vgg16_bottleneck", "--vgg16-weights", vgg16_weights,
        "--cache", cache, "--json", env=env, check=True,
    )  # fmt: skip
    report = json.loads(built.stdout)
    assert (report["built"], report["failed"], report["sets"]) == (2, [], ["vgg16_bottleneck"])
    rows = scan(files[:2], corpus="ravdess").rows
    data = load(rows, default_params("vgg16_bottleneck", vgg16_weights=vgg16_weights), cache_dir=cache)
    assert data.X.shape == (2, 25088) and data.params["size"] == [224, 224]
    # The variable serves as the default; a warm rebuild computes nothing.
    warm = run_cli(
        "features", "build", *files[:2], "--set", "vgg16_bottleneck", "--cache", cache, "--json",
        env={**env, VGG16_WEIGHTS_ENV: str(vgg16_weights)}, check=True,
    )  # fmt: skip
    assert json.loads(warm.stdout)["cached"] == 2
