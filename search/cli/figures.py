"""Commands: plot (one recording), explore (a corpus), report (studies, a model directory, an evaluation)."""

from __future__ import annotations

import argparse
import sys

from emotune.search.cli._common import add_storage, command, table
from emotune.search.cli._ssl import add_ssl_model

_PLOT_EXAMPLE = """example:
  emotune plot ~/data/ravdess/Actor_02/03-01-05-02-01-01-02.wav --out figures/angry"""

_EXPLORE_EXAMPLE = """example:
  emotune explore ~/data/ravdess --out explore/
  emotune explore ~/data/ravdess ~/data/tess --features classic_stats --target emotion6 --out explore6/"""

_REPORT_EXAMPLE = """example:
  emotune report knn-ravdess mlp-ravdess xgb-ravdess --out search.html
  emotune report models/ravdess --out models.html
  emotune evaluate ~/data/ravdess --spaces knn,mlp --json > eval.json && emotune report eval.json --out eval.html"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register plot, explore and report."""
    p = command(
        sub,
        "plot",
        epilog=_PLOT_EXAMPLE,
        help="figures of one recording (waveform, spectrograms, spectrum, envelope, MFCC)",
        description="Draw one recording as the feature cache sees it (same decoding, same STFT): the waveform, "
        "the spectrogram with linear and with log frequency / dB, the log spectrum of the loudest frame, its "
        "spectral envelope (cepstral liftering) with the formant peaks marked, and the MFCCs. Writes one PNG per "
        "figure and recording.png with all of them.",
    )
    p.add_argument("file", metavar="FILE", help="an audio file (WAV, AIFF, FLAC...)")
    p.add_argument(
        "--out",
        default="emotune-plot",
        metavar="DIR",
        help="folder for the PNGs (default emotune-plot): new, empty, or one plot/explore wrote before "
        "(nothing else is written into)",
    )
    p.set_defaults(func=cmd_plot)

    p = command(
        sub,
        "explore",
        epilog=_EXPLORE_EXAMPLE,
        help="PCA + KMeans view of a corpus and its class counts",
        description="Build any missing features through the cache, standardise them, cluster them with KMeans "
        "(as many clusters as classes) and project them to 2-D with PCA: points coloured by class, marked by "
        "cluster, class centroids labelled. Also counts files per class by corpus, speaker and gender. Prints "
        "the tables and the purity of the clusters against the classes.",
    )
    p.add_argument("data", nargs="+", metavar="DATA", help="corpus folders or files")
    p.add_argument("--features", default="classic", metavar="SET", help="feature set (default classic)")
    p.add_argument("--target", default="emotion", help="label scheme (default emotion)")
    p.add_argument(
        "--out",
        default="emotune-explore",
        metavar="DIR",
        help="folder for the figures (default emotune-explore): new, empty, or one plot/explore wrote before "
        "(nothing else is written into)",
    )
    p.add_argument("--corpus", default=None, help="force the corpus reader")
    p.add_argument("--labels", default=None, metavar="CSV", help="labels file for a generic corpus")
    p.add_argument(
        "--cache", default=None, metavar="DIR", help="feature cache (default: $EMOTUNE_HOME/cache)"
    )
    add_ssl_model(p)
    p.set_defaults(func=cmd_explore)

    p = command(
        sub,
        "report",
        epilog=_REPORT_EXAMPLE,
        help="one self-contained HTML page for studies, a model directory or an evaluation",
        description="Write one HTML page (images embedded, opens offline) for study names, one ensemble's model "
        "directory, or one `evaluate --json` file: optimisation history and best so far, parameter importances "
        "(optuna.importance, fANOVA), pruned and complete trials by step, the train / CV / test table, "
        "confusion matrices, per-class recall and the voter's weights. Written atomically.",
    )
    p.add_argument("sources", nargs="+", metavar="STUDY|MODEL_DIR|EVAL.json")
    p.add_argument(
        "--out", required=True, metavar="HTML", help="the page to write (a new file, or a page emotune wrote)"
    )
    p.add_argument(
        "--png-dir",
        default=None,
        metavar="DIR",
        help="also write each picture as a PNG there (a new or empty folder, or one emotune wrote figures into)",
    )
    add_storage(p)
    add_ssl_model(p)
    p.set_defaults(func=cmd_report)


def cmd_plot(args: argparse.Namespace) -> int:
    from emotune.search.viz import plot_recording
    from emotune.search.viz._common import check_dir

    check_dir(args.out)  # before decoding: a refused folder costs nothing
    written = plot_recording(args.file, args.out)
    for path in written.values():
        print(path)
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from emotune.search.viz import explore
    from emotune.search.viz.corpus import counts_table

    view = explore(
        args.data,
        args.out,
        feature_set=args.features,
        target=args.target,
        cache_dir=args.cache,
        corpus=args.corpus,
        labels=args.labels,
    )
    for by in ("corpus", "gender", "speaker"):
        header, rows = counts_table(view, by)
        print(table(header, rows))
        print()
    if view.dropped:
        print(
            f"emotune: {len(view.dropped)} file(s) left out (no label under {view.target} or no usable audio)",
            file=sys.stderr,
        )
    print(
        f"{len(view.labels)} files, {len(view.classes)} classes, {view.feature_set} features: KMeans cluster purity "
        f"{view.purity:.3f}; PCA keeps {sum(view.explained):.0%} of the variance in 2-D"
    )
    for path in view.files.values():
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from emotune.search.viz import write_report

    print(write_report(args.sources, args.out, storage=args.storage, png_dir=args.png_dir))
    return 0
