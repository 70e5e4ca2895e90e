"""Commands: ensemble, predict, evaluate, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emotune.features import METRICS, SCHEMES
from emotune.search._study import PROTOCOLS
from emotune.search.cli._common import (
    add_cache,
    add_corpus,
    add_ray,
    add_storage,
    check_inputs,
    command,
    print_json,
    run_options,
)
from emotune.search.cli._ssl import add_ssl_model
from emotune.search.cli.options import FOLDS, POSITIVE, SEED, seconds

_ENSEMBLE_EXAMPLE = """example:
  emotune ensemble mlp-ravdess knn-ravdess xgb-ravdess --out models/ravdess --top-k 3
  emotune ensemble mlp-ravdess cnn-ravdess --out models/v2 --data /mnt/ravdess --force"""

_PREDICT_EXAMPLE = """example:
  emotune predict models/ravdess call.wav
  emotune predict models/ravdess recordings/ --json > predictions.json
  emotune predict models/ravdess meeting.flac --window 3 --json"""

_EVALUATE_EXAMPLE = """example:
  emotune evaluate ~/data/ravdess --spaces knn,logreg,mlp
  emotune evaluate ~/data/ravdess --spaces mlp,xgb --outer-folds 4 --trials 30 --timeout 300 --json
  emotune evaluate ~/data/ravdess --spaces mlp --protocol random --target emotion_gender"""

_DEMO_EXAMPLE = """example:
  emotune demo                          # synthetic corpus, everything under ./emotune-demo
  emotune demo --data ~/data/ravdess --out /tmp/demo"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the model commands."""
    _register_ensemble(sub)
    _register_predict(sub)
    _register_evaluate(sub)
    _register_demo(sub)


def _register_ensemble(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from emotune.search.vote import _defaults as ens

    p = command(
        sub,
        "ensemble",
        help="weighted soft voter from the best trials of studies",
        description="Take the best K complete trials of each study (all on one dataset, target, protocol and "
        "seed), choose voter weights on their stored out-of-fold probabilities (greedy selection with "
        "replacement), refit the members on the whole training part, test once on the held-out split, and "
        "write a model directory (voter, manifest.json with checksums, confusion matrix).",
        epilog=_ENSEMBLE_EXAMPLE,
    )
    p.add_argument("studies", nargs="+", metavar="STUDY")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write")
    p.add_argument(
        "--top-k",
        type=POSITIVE,
        default=ens.DEFAULT_TOP_K,
        help=f"best trials per study (default {ens.DEFAULT_TOP_K})",
    )
    p.add_argument(
        "--metric",
        choices=METRICS,
        default=None,
        help="what the weights maximise (default: the study's)",
    )
    p.add_argument(
        "--iterations",
        type=POSITIVE,
        default=ens.DEFAULT_ITERATIONS,
        help=f"greedy selection steps (default {ens.DEFAULT_ITERATIONS})",
    )
    p.add_argument(
        "--voter",
        choices=ens.VOTERS,
        default="auto",
        help="auto (default): greedy weights or a stacked logistic regression, whichever scores better in "
        "cross-validation on the out-of-fold probabilities; or force one",
    )
    p.add_argument(
        "--data", default=None, metavar="DIR", help="where the studies' data lives now (re-roots paths)"
    )
    add_cache(p)
    p.add_argument("--force", action="store_true", help="replace a non-empty MODEL_DIR")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    add_storage(p)
    add_ssl_model(p)
    p.set_defaults(func=cmd_ensemble)


def _register_predict(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub,
        "predict",
        help="classify audio files with a model directory",
        description="Label and class probabilities (3 decimals here, unrounded with --json) for each audio file, "
        "computed with exactly the "
        "feature parameters in the model's manifest. A model directory whose files do not match their "
        "checksums, or made for other feature versions, is refused. A file that cannot be read is reported on "
        "stderr and skipped. Exit 0 when at least one file was classified. speaker_norm in the output: "
        "'speaker' (normalised with its speaker's files in this call, >= 5 of them), 'training' (with the "
        "training statistics), or 'none' (the model does not normalise).",
        epilog=_PREDICT_EXAMPLE,
    )
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("paths", nargs="+", metavar="FILE_OR_FOLDER")
    p.add_argument(
        "--window",
        type=seconds(),
        default=None,
        metavar="SECONDS",
        help="classify windows of this length; the file's probabilities are their mean",
    )
    p.add_argument("--json", action="store_true", help="JSON list on stdout, nothing else there")
    add_ssl_model(p)
    p.set_defaults(func=cmd_predict)


def _register_evaluate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from emotune.search.vote import _defaults as ev

    p = command(
        sub,
        "evaluate",
        help="nested, speaker-held-out evaluation of search + ensemble",
        description="Nested evaluation: for each outer fold of speakers, search the spaces on the other speakers "
        "only (inner speaker-grouped CV, temporary studies deleted afterwards), ensemble them, and test on the "
        "held-out speakers. Reports mean and std of test accuracy and UAR over folds, per space and for the "
        f"voter. Defaults ({ev.DEFAULT_OUTER_FOLDS} outer folds, {ev.DEFAULT_TRIALS} trials or "
        f"{ev.DEFAULT_TIMEOUT:g} s per search, {ev.DEFAULT_WORKERS} workers) finish on RAVDESS speech (1,440 "
        "files) within an hour on a 2-core machine.",
        epilog=_EVALUATE_EXAMPLE,
    )
    p.add_argument("data", nargs="+", metavar="DATA", help="corpus folders")
    _add_evaluation_budget(p)
    _add_evaluation_data(p)
    add_corpus(p)
    add_cache(p)
    add_ray(p)
    p.add_argument("--json", action="store_true", help="results as JSON on stdout")
    p.add_argument(
        "--report", default=None, metavar="HTML", help="also write an HTML report (see `emotune report`)"
    )
    add_storage(p)
    add_ssl_model(p)
    p.set_defaults(func=cmd_evaluate)


def _add_evaluation_budget(p: argparse.ArgumentParser) -> None:
    """What ``evaluate`` runs in each outer fold: spaces, folds, trials, time, workers, voter size."""
    from emotune.search.vote import _defaults as ev

    p.add_argument(
        "--spaces",
        default=",".join(ev.DEFAULT_SPACES),
        help=f"comma-separated spaces (default {','.join(ev.DEFAULT_SPACES)})",
    )
    outer = p.add_mutually_exclusive_group()
    outer.add_argument(
        "--outer-folds", type=FOLDS, default=ev.DEFAULT_OUTER_FOLDS, help="outer folds (held-out groups)"
    )
    outer.add_argument(
        "--folds",
        metavar="CSV",
        default=None,
        help="outer folds from a file instead: header speaker,fold, speaker ids as emotune prints them "
        "(ravdess:01), folds from 1; every speaker of the data must be in it (e.g. "
        "../shared/folds/emobox_ravdess.csv, the EmoBox benchmark's six RAVDESS folds)",
    )
    p.add_argument(
        "--inner-folds", type=FOLDS, default=ev.DEFAULT_INNER_FOLDS, help="inner cross-validation folds"
    )
    p.add_argument("--trials", type=POSITIVE, default=ev.DEFAULT_TRIALS, help="finished trials per search")
    p.add_argument(
        "--timeout",
        type=seconds(zero=True),
        default=ev.DEFAULT_TIMEOUT,
        metavar="S",
        help="per search: start no trial after S seconds (0: no limit)",
    )
    p.add_argument("--workers", type=POSITIVE, default=ev.DEFAULT_WORKERS, help="Ray workers per search")
    p.add_argument(
        "--top-k", type=POSITIVE, default=ev.DEFAULT_TOP_K, help="best trials per study for the voter"
    )


def _add_evaluation_data(p: argparse.ArgumentParser) -> None:
    """How ``evaluate`` labels, splits, scores and normalises the data, and which voter it fits."""
    from emotune.search.vote import _defaults as ens

    p.add_argument(
        "--target", default="emotion", choices=SCHEMES, help="label scheme (see `emotune search --help`)"
    )
    p.add_argument("--protocol", default="actor", choices=PROTOCOLS, help="outer and inner splits")
    p.add_argument("--metric", default="uar", choices=METRICS, help="objective and weight metric")
    p.add_argument("--seed", type=SEED, default=0)
    norm = p.add_mutually_exclusive_group()
    norm.add_argument(
        "--speaker-norm",
        dest="speaker_norm",
        action="store_const",
        const=True,
        default="both",
        help="speaker-normalised only (default: plain and speaker-normalised side by side, on the same folds)",
    )
    norm.add_argument(
        "--no-speaker-norm",
        dest="speaker_norm",
        action="store_const",
        const=False,
        help="plain features only",
    )
    p.add_argument(
        "--features",
        default=None,
        metavar="SET",
        help="feature set(s) of every search, as `emotune search --features` (default: each space's)",
    )
    p.add_argument(
        "--voter",
        choices=ens.VOTERS,
        default="auto",
        help="auto (default): greedy weights or a stacked logistic regression, chosen on out-of-fold data",
    )


def _register_demo(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub,
        "demo",
        help="the whole flow in a few minutes on the embedded storage",
        description="Synthetic corpus (or --data), features, three spaces (knn, logreg, mlp) searched with two "
        "workers on the embedded PostgreSQL, the weighted voter with its table and confusion matrix, best "
        "params exported as JSON, and predict on a few files. Ends with where everything was written.",
        epilog=_DEMO_EXAMPLE,
    )
    p.add_argument("--data", default=None, metavar="DIR", help="a corpus folder instead of the synthetic one")
    p.add_argument(
        "--out", default="emotune-demo", metavar="DIR", help="where to write (default ./emotune-demo)"
    )
    p.add_argument(
        "--trials", type=POSITIVE, default=None, help="trials per space (default: 12, or 8 with --data)"
    )
    p.add_argument("--workers", type=POSITIVE, default=2, help="Ray workers per search (default 2)")
    p.set_defaults(func=cmd_demo)


def cmd_ensemble(args: argparse.Namespace) -> int:
    from emotune.search._storage import resolve_url
    from emotune.search.vote import _ensemble as ens
    from emotune.search.vote._table import describe

    result = ens.build_ensemble(
        resolve_url(args.storage),
        args.studies,
        args.out,
        top_k=args.top_k,
        metric=args.metric,
        iterations=args.iterations,
        reroot=args.data,
        cache_dir=args.cache,
        force=args.force,
        progress=not args.json,
        voter_kind=args.voter,
    )
    if args.json:
        print_json({"out": str(result.out), **result.manifest})
        return 0
    print(describe(result))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from emotune.search.vote import _predict as pr

    def on_error(path: str, reason: str) -> None:
        print(f"{path}: {reason}", file=sys.stderr, flush=True)

    result = pr.predict(args.model, args.paths, window=args.window, progress=not args.json, on_error=on_error)
    if not result.predictions:
        raise pr.PredictError(
            f"no file could be classified ({len(result.errors)} failed)"
            if result.errors
            else "no audio files given"
        )
    if args.json:
        print_json([p.to_json() for p in result.predictions])  # unrounded
    else:
        print(pr.format_text(rounded(result.predictions)))
    if result.errors:
        print(
            f"emotune: {len(result.predictions)} files classified, {len(result.errors)} could not be",
            file=sys.stderr,
        )
    return 0


PROBABILITY_DIGITS = 3  # the terminal's probabilities; --json keeps them unrounded


def rounded(predictions: Sequence[Any], digits: int = PROBABILITY_DIGITS) -> list[Any]:
    """Copies of predictions whose probabilities (of the file and of each window) are rounded for people."""
    import dataclasses

    def r(probabilities: dict[str, float]) -> dict[str, float]:
        return {c: round(float(v), digits) for c, v in probabilities.items()}

    return [
        dataclasses.replace(
            p,
            probabilities=r(p.probabilities),
            windows=None
            if p.windows is None
            else [{**w, "probabilities": r(w["probabilities"])} for w in p.windows],
        )
        for p in predictions
    ]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from emotune.search._storage import resolve_url
    from emotune.search.vote import _evaluate as ev

    spaces = [s.strip() for s in args.spaces.split(",") if s.strip()]
    check_inputs(spaces, args.data)
    if args.report:
        from emotune.search.viz.report import check_out

        check_out(args.report)  # before the long work
    result = ev.evaluate(
        args.data,
        spaces,
        url=resolve_url(args.storage),
        outer=args.outer_folds,
        inner=args.inner_folds,
        trials=args.trials,
        timeout=args.timeout or None,
        workers=args.workers,
        top_k=args.top_k,
        features=args.features,
        voter=args.voter,
        progress=True,  # on stderr, so --json output stays clean
        folds_file=args.folds,
        **run_options(args),
    )
    if args.json:
        print_json(result.to_json())
    else:
        print(ev.format_summary(result))
    if args.report:
        from emotune.search._text import json_clean
        from emotune.search.viz.report import write_evaluation_report

        path = write_evaluation_report(json_clean(result.to_json()), args.report)
        print(f"emotune: wrote {path}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from emotune.search.cli.demo import run_demo

    run_demo(
        out=Path(args.out),
        data=Path(args.data) if args.data else None,
        trials=args.trials,
        workers=args.workers,
    )
    return 0
