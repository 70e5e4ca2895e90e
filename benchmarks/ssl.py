"""The ``ssl`` feature build against the loop a user would write, on a base-size encoder.

Model: a WavLM with the wavlm-base configuration (12 layers of 768, 94.4 M parameters) and random
weights, saved with ``save_pretrained`` into a temporary folder: the compute is that of trained
weights (none can be fetched here). ``--model tiny`` uses a 3-layer width-32 one (development only).

Corpus: the 240 files of ../shared/devset/ravdess (``--files N`` takes the first N).

Arms, each one whole process, alternated ``--repeats`` times (default 2), the best of each kept:

- loop: one process, torch's default threads (one per core), the model loaded once, files one by one:
        ``librosa.load(path, sr=16000)``, the feature extractor, the model with every hidden state,
        each state's mean and std over time (what the ``ssl`` set holds).
- cold: ``emotune features build DIR --set ssl --ssl-model M --cache FRESH --json``: a local Ray
        started by the command (one actor per core, one torch thread each, the model loaded once per
        actor), start-up, hashing and Ray start and stop included.

Last line:
  vs_loop             loop wall / cold wall (> 1: the build is faster)
  files_per_s         files / cold wall
  workers             actors of the cold build (one per core)
  peak_rss_mib        the largest actor's peak resident memory (ru_maxrss)
  cache_kib_per_file  the cache folder's size after the cold build / files

Usage: python benchmarks/ssl.py [--files 240] [--repeats 2] [--model base|tiny]
"""

from __future__ import annotations

import os
import sys

# This file shares its name with the standard library's ssl module, which torch imports (through
# asyncio): run as a script, its own folder must not be on the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT.parent / "shared" / "devset" / "ravdess"
BIN = Path(sys.executable).parent

LOOP = r"""
import sys, json, time
import numpy as np, librosa, torch
from transformers import AutoFeatureExtractor, AutoModel
folder, files = sys.argv[1], json.loads(sys.argv[2])
model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
out = []
with torch.inference_mode():
    for path in files:
        y, _ = librosa.load(path, sr=16000)
        values = extractor(y, sampling_rate=16000, return_tensors="pt").input_values
        states = model(values, output_hidden_states=True).hidden_states
        stack = torch.stack([h[0] for h in states]).double()
        out.append(torch.cat([stack.mean(1), stack.std(1, unbiased=False)], 1).float().numpy())
print(json.dumps({"files": len(out), "shape": list(out[0].shape), "threads": torch.get_num_threads()}))
"""


def make_model(folder: Path, size: str) -> int:
    """Save a random WavLM of the base (or tiny) configuration; its parameter count."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    if size == "base":
        config = WavLMConfig()  # wavlm-base: 12 layers, hidden 768, 12 heads, 3072 inner, 7 conv layers
    else:
        config = WavLMConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(32, 32, 32), conv_kernel=(10, 4, 4), conv_stride=(5, 4, 4),
                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, num_buckets=16,
                             max_bucket_distance=40)  # fmt: skip
    model = WavLMModel(config)
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False, return_attention_mask=True
    ).save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def corpus(tmp: Path, n: int) -> Path:
    """The first ``n`` dev-set files (links in a folder keeping RAVDESS's actor folders)."""
    files = sorted(DEVSET.rglob("*.wav"))[:n]
    if len(files) < n:
        raise SystemExit(f"{DEVSET} holds {len(files)} files, fewer than --files {n}")
    root = tmp / "ravdess"
    for f in files:
        target = root / f.parent.name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(f)
    return root


def run_loop(model: Path, root: Path) -> float:
    files = sorted(str(p) for p in root.rglob("*.wav"))
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", LOOP, str(model), json.dumps(files)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"the loop failed: {proc.stderr.strip().splitlines()[-1]}")
    return wall


def run_cold(model: Path, root: Path, cache: Path) -> tuple[float, dict]:
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [str(BIN / "emotune"), "features", "build", str(root), "--set", "ssl", "--ssl-model", str(model)]
    t = time.perf_counter()
    proc = subprocess.run([*cmd, "--cache", str(cache), "--json"], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"the build failed: {proc.stderr.strip().splitlines()[-1]}")
    report = json.loads(proc.stdout)
    if report["built"] != report["files"] or report["failed"]:
        raise SystemExit(f"the build computed {report['built']} of {report['files']} files")
    return wall, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=240, help="dev-set files (default 240)")
    ap.add_argument("--repeats", type=int, default=2, help="alternations of the two arms (default 2)")
    ap.add_argument("--model", choices=("base", "tiny"), default="base", help="encoder size (default base)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="emotune-ssl-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model = tmp / "wavlm"
        n_params = make_model(model, args.model)
        root = corpus(tmp, args.files)
        print(f"model: WavLM {args.model}, {n_params / 1e6:.1f} M parameters, random weights; "
              f"{args.files} files; {os.cpu_count()} cores", file=sys.stderr)  # fmt: skip
        loops, colds = [], []
        report: dict = {}
        for i in range(args.repeats):
            loops.append(run_loop(model, root))
            print(f"loop #{i + 1}: {loops[-1]:.1f} s", file=sys.stderr)
            wall, report_i = run_cold(model, root, tmp / "cache")
            if not colds or wall < min(colds):
                report = report_i
                cache_bytes = sum(p.stat().st_size for p in (tmp / "cache").iterdir() if p.is_file())
            colds.append(wall)
            print(f"cold #{i + 1}: {wall:.1f} s", file=sys.stderr)
    loop, cold = min(loops), min(colds)
    workers = min(os.cpu_count() or 1, args.files)  # one actor per core of the local cluster
    rss = report["timings"].get("worker_peak_rss_mib", 0.0)
    print(f"{'arm':<6} {'best s':>8} {'runs':>20}")
    print(f"{'loop':<6} {loop:8.1f} {' '.join(f'{x:.1f}' for x in loops):>20}")
    print(f"{'cold':<6} {cold:8.1f} {' '.join(f'{x:.1f}' for x in colds):>20}")
    print(f"cold timings: {json.dumps(report['timings'])}")
    print(
        f"vs_loop={loop / cold:.3f} files_per_s={args.files / cold:.2f} workers={workers} "
        f"peak_rss_mib={rss:.0f} cache_kib_per_file={cache_bytes / 1024 / args.files:.1f}"
    )


if __name__ == "__main__":
    main()
