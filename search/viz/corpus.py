"""A corpus at a glance: PCA of its cached features to 2-D, KMeans clusters, class counts.

The features come from the feature cache (built first where missing, as ``search`` does), so the
view shows the arrays the models train on. Features are standardised per column, KMeans runs with as
many clusters as classes on them, and PCA projects them to two dimensions for the picture.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotune.search.viz._common import VizError, check_dir, figure, out_dir, png_bytes, write_atomic

PCA_SIZE = (1000, 800)
COUNTS_SIZE = (1200, 500)
PCA_FIGURE = "pca_kmeans"
COUNTS_FIGURE = "class_counts"
COUNTS_CSV = "class_counts.csv"
_MARKERS = "osD^v<>pP*hX8dH"


@dataclass
class CorpusView:
    """What :func:`explore` computed.

    Attributes:
        feature_set: The feature set the view is made of.
        target: The label scheme.
        classes: Classes present, in the scheme's order.
        labels: [shape=(n,)] each file's class.
        coords: [shape=(n, 2)] PCA coordinates of each file.
        clusters: [shape=(n,)] each file's KMeans cluster.
        explained: Variance ratio of the two components.
        purity: Fraction of files whose cluster's majority class is their class.
        counts: ``(by, value, class) -> files`` with ``by`` in corpus, speaker, gender.
        files: name -> path of what was written.
        dropped: Files left out (no label under the target, no usable audio).
    """

    feature_set: str
    target: str
    classes: list[str]
    labels: np.ndarray
    coords: np.ndarray
    clusters: np.ndarray
    explained: list[float]
    purity: float
    counts: dict[tuple[str, str, str], int]
    files: dict[str, Path] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)


def cluster_purity(labels: Sequence[str] | np.ndarray, clusters: Sequence[int] | np.ndarray) -> float:
    """Fraction of items whose cluster's most common label is their own (1.0: pure clusters)."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    if labels.size == 0:
        return float("nan")
    hits = sum(Counter(labels[clusters == c].tolist()).most_common(1)[0][1] for c in np.unique(clusters))
    return hits / labels.size


def project(X: np.ndarray, n_clusters: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Standardise, cluster (KMeans, ``n_clusters``) and project to 2-D (PCA).

    Returns:
        ``(coords [shape=(n, 2)], clusters [shape=(n,)], explained variance ratios)``.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(X.reshape(len(X), -1).astype(np.float64))
    clusters = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(Z)
    pca = PCA(n_components=2, random_state=seed)
    coords = pca.fit_transform(Z)
    return coords, clusters, [float(v) for v in pca.explained_variance_ratio_]


def explore(
    data: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    feature_set: str = "classic",
    target: str = "emotion",
    cache_dir: str | os.PathLike[str] | None = None,
    corpus: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> CorpusView:
    """Build missing features, then draw the PCA/KMeans view and the class counts into ``out``.

    Writes ``pca_kmeans.png`` (``PCA_SIZE``), ``class_counts.png`` (``COUNTS_SIZE``) and
    ``class_counts.csv`` (by, value, class, files), each atomically.

    Raises:
        FeatureError: bad folders, feature set or target.
        VizError: fewer than two classes or too few files to cluster.
        OutputDirError: ``out`` is a file or a folder emotune did not write (checked first).
    """
    from emotune.features import build, load, scan

    check_dir(out)  # a refused --out costs nothing: nothing is built, created or written
    scanned = scan(list(data), corpus=corpus, labels=labels)
    if not scanned.rows:
        raise VizError(f"no labelled audio files under {', '.join(map(str, data))}")
    build(scanned.rows, sets=[feature_set], cache_dir=cache_dir, progress=progress)
    ds = load(scanned.rows, feature_set, scheme=target, cache_dir=cache_dir)
    if len(ds.classes) < 2:
        raise VizError(
            f"--target {target}: the data holds {len(ds.classes)} class(es); a view needs two or more"
        )
    if len(ds.y) <= len(ds.classes):
        raise VizError(f"{len(ds.y)} usable files for {len(ds.classes)} classes: too few to cluster")
    coords, clusters, explained = project(ds.X, len(ds.classes))
    counts: Counter[tuple[str, str, str]] = Counter()
    for row, label in zip(ds.rows, ds.y.tolist(), strict=True):
        counts["corpus", row.corpus, label] += 1
        counts["speaker", row.speaker, label] += 1
        counts["gender", row.gender or "unknown", label] += 1
    view = CorpusView(
        feature_set=feature_set,
        target=target,
        classes=list(ds.classes),
        labels=ds.y,
        coords=coords,
        clusters=clusters,
        explained=explained,
        purity=cluster_purity(ds.y, clusters),
        counts=dict(counts),
        dropped=list(ds.dropped),
    )
    drawn = {
        PCA_FIGURE: (f"{PCA_FIGURE}.png", pca_png(view)),
        COUNTS_FIGURE: (f"{COUNTS_FIGURE}.png", counts_png(view)),
        "counts": (COUNTS_CSV, counts_csv(view).encode()),
    }
    folder = out_dir(out)  # created only now, with everything to write in hand
    for key, (name, payload) in drawn.items():
        view.files[key] = write_atomic(folder / name, payload)
    return view


def pca_png(view: CorpusView) -> bytes:
    """Points coloured by class, marked by cluster, each class's centroid labelled."""
    fig = figure(*PCA_SIZE)
    ax = fig.add_subplot()
    cmap = _class_colours(len(view.classes))
    for k in np.unique(view.clusters):
        for ci, cls in enumerate(view.classes):
            sel = (view.clusters == k) & (view.labels == cls)
            if sel.any():
                ax.scatter(
                    view.coords[sel, 0],
                    view.coords[sel, 1],
                    s=18,
                    color=cmap[ci],
                    marker=_MARKERS[int(k) % len(_MARKERS)],
                    alpha=0.75,
                    linewidths=0,
                )
    for ci, cls in enumerate(view.classes):
        centre = view.coords[view.labels == cls].mean(axis=0)
        ax.scatter(*centre, s=160, color=cmap[ci], marker="X", edgecolors="black", linewidths=1.2, zorder=3)
        ax.annotate(
            cls,
            centre,
            textcoords="offset points",
            xytext=(8, 8),
            fontsize=11,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8},
        )
    from matplotlib.lines import Line2D

    class_handles = [
        Line2D([], [], ls="", marker="o", color=cmap[i], label=c) for i, c in enumerate(view.classes)
    ]
    cluster_handles = [
        Line2D([], [], ls="", marker=_MARKERS[int(k) % len(_MARKERS)], color="0.3", label=f"cluster {k}")
        for k in np.unique(view.clusters)
    ]
    first = ax.legend(handles=class_handles, title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.add_artist(first)
    ax.legend(handles=cluster_handles, title="KMeans", loc="lower left", bbox_to_anchor=(1.01, 0.0))
    ax.set(
        title=f"{view.feature_set} features, PCA to 2-D; KMeans with {len(view.classes)} clusters "
        f"(purity {view.purity:.2f})",
        xlabel=f"PC 1 ({view.explained[0]:.0%} of variance)",
        ylabel=f"PC 2 ({view.explained[1]:.0%} of variance)",
    )
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def counts_png(view: CorpusView) -> bytes:
    """Per-class file counts by corpus and by gender, as grouped bars."""
    fig = figure(*COUNTS_SIZE)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, by in zip(axes, ("corpus", "gender"), strict=True):
        values = sorted({v for (b, v, _c) in view.counts if b == by})
        width = 0.8 / max(1, len(values))
        x = np.arange(len(view.classes))
        for j, v in enumerate(values):
            heights = [view.counts.get((by, v, c), 0) for c in view.classes]
            bars = ax.bar(x + (j - (len(values) - 1) / 2) * width, heights, width, label=v)
            ax.bar_label(bars, fontsize=7)
        ax.set_xticks(x, view.classes, rotation=45, ha="right")
        ax.set(title=f"files per class by {by}", ylabel="files")
        ax.legend(fontsize=8)
    return png_bytes(fig)


def counts_csv(view: CorpusView) -> str:
    lines = ["by,value,class,files"]
    for (by, value, cls), n in sorted(view.counts.items()):
        lines.append(f"{by},{value},{cls},{n}")
    return "\n".join(lines) + "\n"


def counts_table(view: CorpusView, by: str) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a per-class count table grouped by ``by`` (corpus, speaker or gender)."""
    values = sorted({v for (b, v, _c) in view.counts if b == by})
    header = [by, *view.classes, "total"]
    rows = []
    for v in values:
        cells = [view.counts.get((by, v, c), 0) for c in view.classes]
        rows.append([v, *cells, sum(cells)])
    return header, rows


def _class_colours(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
