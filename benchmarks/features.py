"""Feature extraction: `emotune features build` against serial per-file extraction (the 180-means recipe's) and the floor.

Corpus: RAVDESS-size, made from the 240 real files of ../shared/data/ravdess: 1,440 files under
actor numbers 01..24 (copy c of actor a becomes actor 4c + a, so genders keep their parity), each
copy byte-distinct (a per-copy gain of 0.2%..1.2% on the PCM samples; every other byte, extra RIFF
chunks included, unchanged), so a content-addressed cache really computes 1,440 (asserted).

Arms, each a fresh process, run one after the other on the same files (the serial arms with one
BLAS thread, as each Ray worker has); seed, cold and floor alternate, ``--repeats`` times (default 2),
and the best run of each counts:

- seed:  the 180-means recipe's extraction, file after file in one process: librosa.load at 22,050 Hz, then
         separate mfcc(n_mfcc=40), chroma_stft(S=|stft|) and melspectrogram calls (three STFTs).
- cold:  ``emotune features build DIR --cache FRESH --json`` (local Ray started by the command,
         all cores; numba's JIT cache warm, as after any first run on a machine).
- warm:  the same command again (everything cached: no audio read, no Ray).
- floor: decode + resample + one STFT per file (librosa.load at 22,050 Hz, |librosa.stft|), serial.

"wall" is the whole process (start-up, imports, Ray start and stop included); "loop" is the
extraction alone (seed, floor: the in-process loop after one warm-up file; cold: from Ray being up
until the process ends, worker imports and Ray stop included).

Last line:
  cold_vs_seed            seed wall / cold wall
  compute_vs_seed         seed loop / cold compute, where cold compute = cold wall minus its start-up
                          (interpreter start, imports, scan, hashing, Ray start; Ray stop stays in)
  warm_s                  warm wall
  cold_vs_floor_per_core  cold wall / (floor wall / cores), cores = os.cpu_count()
  cold_vs_floor_loop_per_core  the same with the floor's loop alone (stricter; informative)

Usage: python benchmarks/features.py [--copies 6] [--repeats 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EMOTUNE_TEST_DATA") or ROOT.parent / "shared" / "data")
BIN = Path(sys.executable).parent

SEED = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import librosa

def extract_feature(path):
    X, sr = librosa.load(path, sr=22050)
    stft = np.abs(librosa.stft(X))
    mfccs = np.mean(librosa.feature.mfcc(y=X, sr=sr, n_mfcc=40).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=sr).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=X, sr=sr).T, axis=0)
    return np.hstack([mfccs, chroma, mel])

files = open(sys.argv[1]).read().split("\n")
extract_feature(files[0])  # imports and numba loading, outside the loop timing
t1 = time.perf_counter()
out = np.stack([extract_feature(f) for f in files])
t2 = time.perf_counter()
assert out.shape == (len(files), 180)
print(json.dumps({"loop": t2 - t1, "in_process": t2 - t0}))
"""

FLOOR = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import librosa

def floor(path):
    y, sr = librosa.load(path, sr=22050)
    return np.abs(librosa.stft(y))

files = open(sys.argv[1]).read().split("\n")
floor(files[0])
t1 = time.perf_counter()
for f in files:
    floor(f)
t2 = time.perf_counter()
print(json.dumps({"loop": t2 - t1, "in_process": t2 - t0}))
"""

WARM_NUMBA = r"""
import sys
from emotune.features import extract_file, feature_params, AUDIO_SETS
extract_file(sys.argv[1], [feature_params(s) for s in AUDIO_SETS])
import librosa, numpy as np
y, sr = librosa.load(sys.argv[1], sr=22050)
librosa.feature.chroma_stft(S=np.abs(librosa.stft(y)), sr=sr); librosa.feature.mfcc(y=y, sr=sr)
"""


def make_corpus(out: Path, copies: int) -> list[Path]:
    """1,440 byte-distinct RAVDESS files (240 real ones x ``copies``) under Actor_01..Actor_24."""
    sources = sorted((DATA / "ravdess").glob("Actor_*/*.wav"))
    if len(sources) != 240:
        raise SystemExit(f"expected the 240 RAVDESS files under {DATA / 'ravdess'}, found {len(sources)}")
    files = []
    for copy in range(copies):
        gain = 1.0 - 0.002 * (copy + 1)
        for src in sources:
            fields = src.stem.split("-")
            actor = copy * 4 + int(fields[6])
            fields[6] = f"{actor:02d}"
            dst = out / f"Actor_{actor:02d}" / ("-".join(fields) + ".wav")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(_with_gain(src.read_bytes(), gain))
            files.append(dst)
    digests = {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert len(digests) == len(files), "corpus copies are not byte-distinct"
    return files


def _with_gain(data: bytes, gain: float) -> bytes:
    """The same WAV with its 16-bit PCM samples scaled by ``gain`` (every other chunk untouched)."""
    buf = bytearray(data)
    assert buf[:4] == b"RIFF" and buf[8:12] == b"WAVE", "not a RIFF/WAVE file"
    pos, bits = 12, None
    while pos + 8 <= len(buf):
        cid, size = struct.unpack_from("<4sI", buf, pos)
        body = pos + 8
        if cid == b"fmt ":
            bits = struct.unpack_from("<H", buf, body + 14)[0]
        if cid == b"data":
            assert bits == 16, "benchmark corpus expects 16-bit PCM"
            end = min(body + size, len(buf)) // 2 * 2
            pcm = np.frombuffer(bytes(buf[body:end]), dtype="<i2").astype(np.float64)
            scaled = np.clip(np.rint(pcm * gain), -32768, 32767).astype("<i2")
            buf[body:end] = scaled.tobytes()
            return bytes(buf)
        pos = body + size + (size & 1)
    raise AssertionError("no data chunk")


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a process; return (wall seconds, peak RSS MiB of its largest process, stdout)."""
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (and its reaped children)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{tail}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def time_load(corpus: Path, cache: Path) -> float:
    """Seconds to scan the corpus and load its classic matrix from the cache (after one warm-up)."""
    from emotune.features import load, scan

    load(scan([corpus]).rows, "classic", cache_dir=cache)
    t = time.perf_counter()
    ds = load(scan([corpus]).rows, "classic", cache_dir=cache)
    elapsed = time.perf_counter() - t
    assert ds.X.shape == (len(ds.rows), 180) and len(ds.rows) > 0
    return elapsed


Arm = list[tuple[float, dict[str, Any], float]]  # (wall s, the run's JSON, peak RSS MiB) per run


def _timed_arms(
    repeats: int,
    work: Path,
    corpus: Path,
    listing: Path,
    n: int,
    *,
    env: dict[str, str],
    serial: dict[str, str],
) -> tuple[Arm, Arm, Arm, Path]:
    """The seed-style serial, cold CLI and floor runs, and the last cold run's cache.

    Timed arms alternate, ``repeats`` times each; the best run of each counts (noise on a shared
    machine is one-sided: other work only ever makes a run slower). Each cold run has a fresh cache.
    """
    py = sys.executable
    seeds: Arm = []
    colds: Arm = []
    floors: Arm = []
    cache = work / "cache-0"
    for r in range(repeats):
        wall, rss, out = run([py, "-c", SEED, str(listing)], serial)
        seeds.append((wall, json.loads(out), rss))
        cache = work / f"cache-{r}"
        shutil.rmtree(cache, ignore_errors=True)
        cli = [str(BIN / "emotune"), "features", "build", str(corpus), "--cache", str(cache), "--json"]
        wall, rss, out = run(cli, env)
        report = json.loads(out)
        assert report["files"] == n and report["built"] == n and not report["failed"], report
        colds.append((wall, report, rss))
        wall, rss, out = run([py, "-c", FLOOR, str(listing)], serial)
        floors.append((wall, json.loads(out), rss))
    return seeds, colds, floors, cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=6, help="copies of the 240 files (6 -> 1,440)")
    ap.add_argument("--keep", metavar="DIR", help="build the corpus and cache in DIR and keep them")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each timed arm; the best counts")
    args = ap.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="emotune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".emotune" / "numba"))
    env.pop("RAY_ADDRESS", None)  # the cold arm starts its own local Ray, as a user's first run does
    # The serial arms run on one core, BLAS included (as Ray runs each worker): idle BLAS threads
    # spinning on a busy machine would make the baselines slow for reasons of their own.
    serial = {**env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cores = os.cpu_count() or 1
    try:
        corpus = work / "corpus"
        shutil.rmtree(corpus, ignore_errors=True)
        files = make_corpus(corpus, args.copies)
        listing = work / "files.txt"
        listing.write_text("\n".join(map(str, files)))
        n = len(files)
        py = sys.executable
        run([py, "-c", WARM_NUMBA, str(files[0])], env)  # numba cache warm, as on any used machine

        seeds, colds, floors, cache = _timed_arms(
            args.repeats, work, corpus, listing, n, env=env, serial=serial
        )
        cli = [str(BIN / "emotune"), "features", "build", str(corpus), "--cache", str(cache), "--json"]
        seed_wall, seed, seed_rss = min(seeds, key=lambda a: a[0])
        cold_wall, cold, cold_rss = min(colds, key=lambda a: a[0])
        floor_wall, floor, floor_rss = min(floors, key=lambda a: a[0])
        rows = [("seed-style serial", seed_wall, seed["loop"], seed_rss)]
        # Start-up: what ran before the CLI's clock (interpreter, imports) plus its time to Ray up.
        startup = (cold_wall - cold["timings"]["cli"]) + cold["timings"]["ray_up"]
        cold_compute = cold_wall - startup
        rows.append(("emotune cold (CLI)", cold_wall, cold_compute, cold_rss))

        warm_wall, warm_rss, out = run(cli, env)  # the last cold run's cache, now complete
        warm = json.loads(out)
        assert warm["built"] == 0 and warm["cached"] == n, warm
        rows.append(("emotune warm (CLI)", warm_wall, None, warm_rss))
        load_s = time_load(corpus, cache)
        rows.append(("floor: decode+resample+STFT", floor_wall, floor["loop"], floor_rss))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"{n} RAVDESS files (48 kHz, 16-bit), {cores} cores; wall = whole process, loop = extraction alone")
    print(
        "walls of every run (best counts): "
        + "; ".join(
            f"{name} " + ", ".join(f"{w:.2f}" for w, _, _ in arm)
            for name, arm in (("seed", seeds), ("cold", colds), ("floor", floors))
        )
    )
    print(f"{'arm':30} {'wall s':>8} {'files/s':>8} {'loop s':>8} {'loop files/s':>12} {'peak RSS MiB':>13}")
    for name, wall, loop, rss in rows:
        loop_s = f"{loop:8.2f}" if loop is not None else f"{'-':>8}"
        loop_rate = f"{n / loop:12.0f}" if loop else f"{'-':>12}"
        print(f"{name:30} {wall:8.2f} {n / wall:8.0f} {loop_s} {loop_rate} {rss:13.0f}")
    t = cold["timings"]
    print(
        "cold phases (s): "
        + " ".join(
            f"{k}={t[k]:.2f}"
            for k in ("scan", "hash", "ray_start", "ray_up", "compute", "worker_cpu", "ray_stop", "cli")
            if k in t
        )
        + f"; outside the CLI's own clock (interpreter start, imports): {cold_wall - t['cli']:.2f}"
    )
    print("peak RSS: the largest single process of the arm (for the CLI: its driver or a Ray process)")
    print(f"load of the {n} x 180 classic matrix from the cache (in-process, scan included): {load_s:.3f} s")
    print(
        f"cold_vs_seed={seed_wall / cold_wall:.2f} compute_vs_seed={seed['loop'] / cold_compute:.2f} "
        f"warm_s={warm_wall:.2f} cold_vs_floor_per_core={cold_wall / (floor_wall / cores):.2f} "
        f"cold_vs_floor_loop_per_core={cold_wall / (floor['loop'] / cores):.2f}"
    )


if __name__ == "__main__":
    main()
