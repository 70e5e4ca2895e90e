"""``emotune corpus synth``, ``emotune features build`` and ``emotune features prune``.

Imports stay lazy: a warm ``features build`` (everything cached) imports neither librosa nor Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from emotune.features._corpora import CORPORA, MAX_FILE_BYTES, MAX_SECONDS
from emotune.search.cli._ssl import add_ssl_model
from emotune.search.cli.options import POSITIVE, SEED, integer

_START = time.perf_counter()  # close to process start: the CLI imports this module first thing

_SYNTH_EXAMPLE = "example: emotune corpus synth demo-data --actors 4 --seed 0"
_BUILD_EXAMPLE = f"""examples:
  emotune features build ../shared/data                    # classic, every corpus found
  emotune features build data/ravdess --set classic --set mfcc_seq --json
  emotune features build my-wavs --labels labels.csv --set all --ray-address 10.0.0.5:6379
  emotune features build data/ravdess --set vgg16_bottleneck --vgg16-weights vgg16-397923af.pth
  emotune features build data/ravdess --set ssl --ssl-model ~/models/wavlm-base-plus

A rebuild computes only new or changed files; unchanged files are not even read.
Only regular files are read: a FIFO, a device or a socket (or a link to one) is one failed file.
A file holds at most {MAX_FILE_BYTES >> 20} MiB and {MAX_SECONDS:.0f} s of audio. Ctrl-C or SIGTERM keeps what
was built (exit 130): run the same command again to resume. A damaged cache entry is computed again.
Exit code 1 when nothing could be built, or with --strict when any file failed.

environment: EMOTUNE_HOME (default cache folder), RAY_ADDRESS (cluster to attach to),
RAY_AUTH_MODE (token|disabled; a local cluster runs disabled unless set), NUMBA_CACHE_DIR
(numba's JIT cache shared by the workers; default $EMOTUNE_HOME/numba), EMOTUNE_VGG16_WEIGHTS
(the torchvision vgg16 state_dict file of vgg16_bottleneck; nothing is downloaded)."""
_PRUNE_EXAMPLE = """examples:
  emotune features prune                  # drop features of files that are gone or changed
  emotune features prune data/ravdess     # keep only the features of the files under data/ravdess"""


_RAW = argparse.RawDescriptionHelpFormatter


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``corpus`` and ``features`` command groups."""
    _register_corpus(subparsers)
    _register_features(subparsers)


def _register_corpus(subparsers: argparse._SubParsersAction) -> None:
    raw = _RAW
    corpus = subparsers.add_parser(
        "corpus",
        help="synthetic corpora for demos and tests",
        description="Corpora for demos and tests.",
        epilog=_SYNTH_EXAMPLE,
        formatter_class=raw,
    )
    corpus_sub = corpus.add_subparsers(dest="corpus_command", metavar="COMMAND")
    corpus_sub.required = True
    synth = corpus_sub.add_parser(
        "synth",
        help="write a synthetic RAVDESS-named corpus",
        description="Write a synthetic RAVDESS-named corpus of speech-like signals whose pitch, rate,\n"
        "energy, tilt, jitter and noise depend on emotion, intensity and gender. Deterministic per seed.",
        epilog=_SYNTH_EXAMPLE,
        formatter_class=raw,
    )
    synth.add_argument(
        "out",
        metavar="OUT",
        help="folder to write Actor_XX/*.wav into: new, empty, or an earlier synthetic corpus (never a real one)",
    )
    synth.add_argument(
        "--actors", type=integer(1, 99), default=4, metavar="N", help="number of actors (default 4)"
    )
    synth.add_argument("--seed", type=SEED, default=0, metavar="S", help="random seed (default 0)")
    synth.set_defaults(func=_synth)


def _register_features(subparsers: argparse._SubParsersAction) -> None:
    raw = _RAW
    features = subparsers.add_parser(
        "features",
        help="build and prune the feature cache",
        description="The content-addressed feature cache: build it (in parallel, incrementally) and prune it.",
        epilog="examples:\n  emotune features build ../shared/data --json\n  emotune features prune",
        formatter_class=raw,
    )
    features_sub = features.add_subparsers(dest="features_command", metavar="COMMAND")
    features_sub.required = True
    _register_build(features_sub)
    _register_prune(features_sub)


def _register_build(features_sub: argparse._SubParsersAction) -> None:
    raw = _RAW
    build = features_sub.add_parser(
        "build",
        help="compute missing features of audio files into the cache",
        description="Scan DATA (folders of RAVDESS, TESS, SAVEE, EmoDB, CREMA-D or labelled WAVs), then\n"
        "compute the missing feature sets of every file with parallel Ray tasks into the\n"
        "content-addressed cache. Summary and failures go to stderr (or JSON to stdout with --json).",
        epilog=_BUILD_EXAMPLE,
        formatter_class=raw,
    )
    build.add_argument("data", nargs="+", metavar="DATA", help="audio files or folders")
    build.add_argument(
        "--set",
        dest="sets",
        action="append",
        metavar="NAME",
        help="feature set to build: classic, classic_stats, functionals, mfcc_seq, melspec, vgg16_bottleneck (needs "
        "the VGG16 weights), ssl (needs --ssl-model) or all (every set but vgg16_bottleneck and ssl); repeatable "
        "(default: classic)",
    )
    build.add_argument(
        "--vgg16-weights",
        metavar="PATH",
        help="torchvision vgg16 state_dict file for vgg16_bottleneck (env EMOTUNE_VGG16_WEIGHTS); the "
        "features are keyed by its sha256, not its path",
    )
    _add_cache(build)
    build.add_argument(
        "--corpus", metavar="NAME", choices=CORPORA, help="force one corpus instead of detecting it per file"
    )
    build.add_argument(
        "--labels", metavar="CSV", help="labels CSV (path,label[,speaker][,gender]) for a generic corpus"
    )
    build.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to use (env RAY_ADDRESS; default: a local cluster for this command)",
    )
    build.add_argument(
        "--num-cpus", type=POSITIVE, metavar="N", help="CPUs of the local cluster (default: all)"
    )
    build.add_argument("--strict", action="store_true", help="exit 1 when any file failed")
    build.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ssl_model(build)
    build.set_defaults(func=_build)


def _register_prune(features_sub: argparse._SubParsersAction) -> None:
    raw = _RAW
    prune = features_sub.add_parser(
        "prune",
        help="drop cache entries no file refers to any more",
        description="Drop cached features whose file is gone or changed. With DATA, keep only the\n"
        "features of the audio files under DATA. Refused without --yes when a DATA path does not exist or\n"
        "holds no audio file, or when every entry would go; the refusal says how many entries would go.",
        epilog=_PRUNE_EXAMPLE,
        formatter_class=raw,
    )
    prune.add_argument("data", nargs="*", metavar="DATA", help="files or folders whose features to keep")
    _add_cache(prune)
    prune.add_argument(
        "--yes", action="store_true", help="drop even when DATA yields no audio or every entry would go"
    )
    prune.add_argument("--json", action="store_true", help="print {'dropped': N, 'cache': DIR} on stdout")
    prune.set_defaults(func=_prune)


def _add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="cache folder (default: $EMOTUNE_HOME/cache, else .emotune/cache in the working directory)",
    )


def _synth(args: argparse.Namespace) -> int:
    from emotune.features import synthesize

    files = synthesize(args.out, actors=args.actors, seed=args.seed)
    print(f"wrote {len(files)} files under {args.out}", file=sys.stderr)
    return 0


def _build(args: argparse.Namespace) -> int:
    from emotune.features import EmotuneError, build
    from emotune.features._cache import BuildInterrupted

    started = time.perf_counter()
    try:
        report = build(
            args.data,
            sets=args.sets or ["classic"],
            cache_dir=args.cache,
            ray_address=args.ray_address,
            num_cpus=args.num_cpus,
            progress=not (args.json or args.no_progress),
            corpus=args.corpus,
            labels=args.labels,
            vgg16_weights=args.vgg16_weights,
            ssl_model=args.ssl_model,
        )
    except BuildInterrupted as stop:  # Ctrl-C or SIGTERM: what was committed stays
        from emotune.features._ray import ray_shutdown

        ray_shutdown(quiet=True)
        print(
            f"emotune: interrupted after {stop.built} of {stop.jobs} files were computed (kept in "
            f"{stop.cache}); run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    if "ray_start" in report.timings:
        from emotune.features._ray import ray_shutdown

        # Seconds from this module's import until Ray was up: what a cold build spends before computing.
        phases = ("scan", "hash", "ray_start")
        report.timings["ray_up"] = started - _START + sum(report.timings[k] for k in phases)

        t = time.perf_counter()
        ray_shutdown()
        report.timings["ray_stop"] = time.perf_counter() - t
    report.timings["cli"] = time.perf_counter() - _START
    if args.json:
        from emotune.search._text import json_clean

        out = {
            "files": report.files,
            "built": report.built,
            "cached": report.cached,
            "failed": report.failed,
            "cache": report.cache,
            "sets": report.sets,
            "nodes": report.nodes,
            "unparsed": [{"path": p, "reason": r} for p, r in report.unparsed],
            "timings": {k: round(v, 4) for k, v in report.timings.items()},
        }
        sys.stdout.write(json.dumps(json_clean(out), indent=2) + "\n")
    else:
        _summary(report)
    if report.files == 0:
        raise EmotuneError(f"no labelled audio files under {', '.join(args.data)}")
    if report.built + report.cached == 0:
        raise EmotuneError(
            f"none of the {report.files} files could be built (first: {report.failed[0]['path']})"
        )
    if args.strict and report.failed:
        return 1
    return 0


def _summary(report: Any) -> None:
    from emotune.search._text import table

    err = sys.stderr
    for path, reason in report.unparsed:
        print(f"unparsed: {path}: {reason}", file=err)
    for item in report.failed:
        print(f"failed: {item['path']}: {item['reason']}", file=err)
    row = [
        ",".join(report.sets),
        report.files,
        report.built,
        report.cached,
        len(report.failed),
        len(report.unparsed),
        f"{report.timings.get('cli', report.timings.get('total', 0.0)):.1f}",
    ]
    print(table(["sets", "files", "built", "cached", "failed", "unparsed", "seconds"], [row]), file=err)
    if len(report.nodes) > 1:
        print("files per node: " + ", ".join(f"{k}: {v}" for k, v in report.nodes.items()), file=err)
    print(f"cache: {report.cache}", file=err)


def _prune(args: argparse.Namespace) -> int:
    from emotune.features import default_cache_dir, prune

    dropped = prune(args.cache, keep_paths=args.data or None, yes=args.yes)
    cache = args.cache or str(default_cache_dir())
    if args.json:
        sys.stdout.write(json.dumps({"dropped": dropped, "cache": cache}) + "\n")
    else:
        print(f"dropped {dropped} entries from {cache}", file=sys.stderr)
    return 0
