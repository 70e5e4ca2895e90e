"""One self-contained HTML page about a search: studies, an ensemble's model directory, an evaluation.

Every picture is a PNG drawn by matplotlib (Optuna's own ``optuna.visualization.matplotlib`` charts,
``optuna.importance`` for parameter importances, scikit-learn's ``ConfusionMatrixDisplay``) and
embedded as a ``data:`` URI, so the page opens offline from a single file. It is written atomically.

Sections:

- per study: optimisation history with the best value so far, parameter importances, how far the
  finished trials got (last step reported) by state, and the best trial's out-of-fold confusion
  matrix and per-class recall;
- for a model directory: the train / CV / test table of every candidate and the voter, the voter's
  weights, the confusion matrix of each member and of the voter on the test split, per-class recall;
- for an evaluation (``evaluate --json``): mean and spread of test scores over outer folds per model,
  per fold, with the voter's weights.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emotune.search.viz._common import VizError, figure, png_bytes, quiet_plotting, write_atomic

WIDE = (900, 420)
REPORT_FILE = "report.html"  # the page ``ensemble`` writes into a model directory
GENERATOR = "emotune report"  # in every page's <meta name="generator">: how --out knows its own pages


@dataclass
class Section:
    """A titled part of the page: HTML blocks (tables, images) in order."""

    title: str
    blocks: list[str] = field(default_factory=list)

    def image(self, png: bytes, alt: str) -> None:
        self.blocks.append(img_tag(png, alt))

    def grid(self, images: Sequence[tuple[bytes, str]]) -> None:
        """Images side by side, wrapping (confusion matrices of several models)."""
        self.blocks.append(
            '<div class="grid">' + "".join(img_tag(png, alt) for png, alt in images) + "</div>"
        )

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> None:
        self.blocks.append(html_table(header, rows, caption))

    def text(self, words: str) -> None:
        self.blocks.append(f"<p>{html.escape(words)}</p>")


# --- HTML -----------------------------------------------------------------------------------------


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` carrying the PNG itself (base64 ``data:`` URI), with its pixel size."""
    width, height = png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" width="{width}" height="{height}">'
    )


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.3f}"
    return html.escape(str(v))


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:"DejaVu Sans",Verdana,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 12px}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse;margin:12px 0;font-size:.9em}caption{text-align:left;font-weight:bold;padding:4px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto;display:block;margin:10px 0}
.meta{color:#666;font-size:.85em}
.grid{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}.grid img{max-width:49%;margin:0}
"""


def render(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """The page: a title, a line of metadata, then every section."""
    from emotune.search._text import emotune_version

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(subtitle)} Made by emotune {html.escape(emotune_version())} on {stamp}.</p>',
    ]
    for s in sections:
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>")
        parts += s.blocks
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- figures shared by the sources ----------------------------------------------------------------


def confusion_png(matrix: np.ndarray, classes: Sequence[str], title: str) -> bytes:
    """scikit-learn's ``ConfusionMatrixDisplay`` of a count matrix (rows true, columns predicted)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(classes)
    side = int(max(420, 48 * n + 260))
    fig = figure(side, int(side * 0.9))
    ax = fig.add_subplot()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(classes)).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45, values_format="d"
    )
    ax.set_title(title, fontsize=10)
    return png_bytes(fig)


def recall_of(matrix: np.ndarray) -> np.ndarray:
    """Per-class recall from a confusion matrix (NaN for a class with no true files)."""
    m = np.asarray(matrix, dtype=np.float64)
    totals = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(m) / totals, np.nan)


def recall_png(recalls: Mapping[str, np.ndarray], classes: Sequence[str], title: str) -> bytes:
    """Grouped bars: per-class recall of each model (one colour per model)."""
    fig = figure(*WIDE)
    ax = fig.add_subplot()
    x = np.arange(len(classes))
    width = 0.8 / max(1, len(recalls))
    for j, (name, r) in enumerate(recalls.items()):
        ax.bar(x + (j - (len(recalls) - 1) / 2) * width, np.nan_to_num(r), width, label=name)
    ax.set_xticks(x, list(classes), rotation=30, ha="right")
    ax.set(ylim=(0, 1.05), ylabel="recall", title=title)
    ax.axhline(1.0 / max(1, len(classes)), color="0.4", ls="--", lw=0.8, label="chance")
    ax.legend(fontsize=7, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(fig)


def weights_png(weights: Mapping[str, float], title: str) -> bytes:
    """Horizontal bars of the voter's weights."""
    names = list(weights)
    fig = figure(WIDE[0], max(200, 60 + 32 * len(names)))
    ax = fig.add_subplot()
    bars = ax.barh(names, [weights[n] for n in names], color="tab:green")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.1), xlabel="weight", title=title)
    return png_bytes(fig)


# --- studies --------------------------------------------------------------------------------------


def _pyplot_png(ax: Any, size: tuple[int, int]) -> bytes:
    """PNG of a figure Optuna drew with pyplot, at ``size`` pixels; the figure is closed."""
    import matplotlib.pyplot as plt

    fig = ax.figure if not isinstance(ax, np.ndarray) else ax.flat[0].figure
    try:
        fig.set_size_inches(size[0] / 100, size[1] / 100)
        fig.set_dpi(100)
        fig.set_layout_engine("constrained")
        return png_bytes(fig)
    finally:
        plt.close(fig)


def steps_png(trials: Sequence[Any], title: str) -> bytes:
    """How far finished trials got: last reported step, stacked by state (complete, pruned)."""
    import optuna

    done = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}
    last = {
        name: [max(t.intermediate_values) for t in trials if t.state == s and t.intermediate_values]
        for name, s in done.items()
    }
    top = max([0, *last["complete"], *last["pruned"]])
    fig = figure(*WIDE)
    ax = fig.add_subplot()
    bins = np.arange(-0.5, top + 1.5, 1.0)
    ax.hist(
        [last["complete"], last["pruned"]],
        bins=bins,
        stacked=True,
        label=["complete", "pruned"],
        color=["tab:blue", "tab:orange"],
        rwidth=0.85,
    )
    ax.set(xlabel="last step reported (fold, boosting round or epoch)", ylabel="trials", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(fig)


def study_section(url: str, name: str) -> Section:
    """Figures and tables of one study from the storage (see the module docstring)."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    from emotune.search._search import open_study

    study, spec, data = open_study(url, name)
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    count = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in states}
    sec = Section(f"study {name}")
    complete = [t for t in trials if t.state == states.COMPLETE and t.value is not None]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    sec.text(
        f"space {spec.space}, features {spec.feature_set}, target {spec.target} ({len(spec.classes)} classes), "
        f"protocol {spec.protocol}, metric {spec.metric} (maximised), {len(data.folds)}-fold CV on "
        f"{len(data.train_index)} training files; {len(data.test_index)} test files held out."
    )
    sec.table(
        ["trials", "complete", "pruned", "failed", "running", f"best {spec.metric}", "best trial"],
        [
            [
                len(trials),
                count["complete"],
                count["pruned"],
                count["fail"],
                count["running"],
                best.value if best else None,
                f"#{best.number}" if best else None,
            ]
        ],
    )
    if best is None:
        sec.text("no complete trial yet: nothing to draw.")
        return sec
    sec.table(
        ["parameter", "value"], [[k, v] for k, v in sorted(best.params.items())], "best trial's parameters"
    )
    import matplotlib

    with quiet_plotting(), matplotlib.rc_context():  # Optuna sets its ggplot style globally: keep it here
        ax = ovm.plot_optimization_history(study, target_name=spec.metric)
        ax.set_title(f"{name}: {spec.metric} of each trial and the best so far")
        sec.image(_pyplot_png(ax, WIDE), f"optimisation history of {name}")
        ax2 = _importances_axes(study)
        if ax2 is not None:
            ax2.set_title(f"{name}: parameter importances (fANOVA, optuna.importance)", loc="left")
            size = (WIDE[0], max(220, 80 + 30 * len(ax2.get_yticks())))
            sec.image(_pyplot_png(ax2, size), f"parameter importances of {name}")
        else:
            sec.text("parameter importances need at least two complete trials with parameters.")
    sec.image(
        steps_png(trials, f"{name}: how far finished trials got"), f"pruned and complete trials of {name}"
    )

    _add_out_of_fold(sec, url, name, best.number, spec, data)
    return sec


def _add_out_of_fold(sec: Section, url: str, name: str, number: int, spec: Any, data: Any) -> None:
    """The best trial's out-of-fold scores, confusion matrix and recall (when its probabilities are stored)."""
    from emotune.features import scores
    from emotune.search._search import load_oof

    oof = load_oof(url, name, number)
    y_train = np.array([spec.classes.index(data.labels[i]) for i in data.train_index])
    if oof is not None and oof.shape == (len(y_train), len(spec.classes)):
        pred = oof.argmax(axis=1)
        m = scores(y_train, pred)
        sec.table(
            ["model", "space", "train acc", "CV acc", "CV UAR", "test acc", "test UAR"],
            [[f"{name}#{number}", spec.space, None, m["accuracy"], m["uar"], None, None]],
            "train / CV / test (CV: pooled out-of-fold predictions; train and test come with `emotune ensemble`)",
        )
        from sklearn.metrics import confusion_matrix

        cm = confusion_matrix(y_train, pred, labels=range(len(spec.classes)))
        sec.image(
            confusion_png(cm, spec.classes, f"{name}#{number}: out-of-fold on {len(y_train)} training files"),
            f"confusion matrix of {name}",
        )
        sec.image(
            recall_png(
                {f"{name}#{number}": recall_of(cm)},
                spec.classes,
                f"{name}: out-of-fold recall per class",
            ),
            f"per-class recall of {name}",
        )


def _importances_axes(study: Any) -> Any:
    """Optuna's importance chart (fANOVA through ``optuna.importance``), or None when it cannot rank."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    try:
        return ovm.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except (RuntimeError, ValueError):  # too few complete trials, or no parameters to rank
        plt.close("all")
        return None


# --- model directory ------------------------------------------------------------------------------


def ensemble_sections(manifest: Mapping[str, Any]) -> list[Section]:
    """The ensemble's part of the page, from a model directory's manifest."""
    classes = list(manifest.get("classes") or [])
    rows = list(manifest.get("metrics", {}).get("rows") or [])
    stacked = (manifest.get("voter") or {}).get("kind") == "stacked"
    sec = Section("ensemble")
    sec.text(
        f"{len(manifest.get('members', []))} members from {len(manifest.get('studies', []))} studies "
        f"({', '.join(manifest.get('studies', []))}); target {manifest.get('target')} ({len(classes)} classes), "
        f"protocol {manifest.get('protocol')}, {manifest.get('n_train')} training / {manifest.get('n_test')} test files"
        + (f", test speakers {', '.join(manifest['test_speakers'])}" if manifest.get("test_speakers") else "")
        + f"; {_voter_words(manifest)}."
    )
    sec.table(
        ["model", "space", "features", "weight", "train acc", "CV acc", "CV UAR", "test acc", "test UAR"],
        [
            [
                r.get("member"),
                r.get("space"),
                r.get("feature_set"),
                _weight_cell(r, stacked),
                r.get("train_accuracy"),
                r.get("cv_accuracy"),
                r.get("cv_uar"),
                r.get("test_accuracy"),
                r.get("test_uar"),
            ]
            for r in rows
        ],
        "train / CV / test (CV: pooled out-of-fold predictions on the training part)",
    )
    weights = member_weights(manifest)
    if weights:
        sec.image(weights_png(weights, "voter weights (greedy selection with replacement)"), "voter weights")
    sel = manifest.get("selection") or {}
    if sel.get("candidates") and not stacked:
        sec.table(
            ["candidate", f"out-of-fold {manifest.get('metric')}", "times chosen"],
            [[c["name"], c["oof_score"], c["count"]] for c in sel["candidates"]],
            "candidates the weights were chosen from",
        )
    conf = Section("confusion matrices on the test split")
    recalls: dict[str, np.ndarray] = {}
    images = []
    voter = manifest.get("confusion_matrix")
    if voter:
        m = np.asarray(voter["counts"])
        images.append((confusion_png(m, classes, "voter (test)"), "confusion matrix of the voter"))
        recalls["voter"] = recall_of(m)
    for r in rows[:-1]:
        if r.get("test_confusion") is not None:
            m = np.asarray(r["test_confusion"])
            name = str(r["member"])
            images.append((confusion_png(m, classes, f"{name} (test)"), f"confusion matrix of {name}"))
            recalls[name] = recall_of(m)
    if images:
        conf.grid(images)
    out = [sec]
    if recalls:
        conf.image(recall_png(recalls, classes, "recall per class on the test split"), "per-class recall")
    if conf.blocks:
        out.append(conf)
    return out


def _weight_cell(row: Mapping[str, Any], stacked: bool) -> Any:
    """A row's weight; for a stacked voter's members "stacked" (in the voter) or none (no fixed weights)."""
    if not stacked or row.get("member") == "voter":
        return row.get("weight")
    return "stacked" if row.get("in_voter", row.get("weight")) else None


def member_weights(manifest: Mapping[str, Any]) -> dict[str, float]:
    """Each member's weight in a greedy voter; empty for a stacked one (its blend is learned, not weights)."""
    members = manifest.get("members") or []
    if not members or any(not isinstance(m.get("weight"), (int, float)) for m in members):
        return {}
    return {str(m["name"]): float(m["weight"]) for m in members}


def _voter_words(manifest: Mapping[str, Any]) -> str:
    """How the voter blends its members, for the page's first paragraph."""
    voter = manifest.get("voter") or {}
    metric = manifest.get("metric")
    if voter.get("kind") == "stacked":
        c = voter.get("meta_C")
        return (
            "stacked voter: a logistic regression"
            + (f" (C={c:g})" if isinstance(c, (int, float)) else "")
            + " reads the members' log-probabilities, fit on their out-of-fold probabilities "
            f"(chosen by cross-validation on out-of-fold {metric}); the members have no fixed weights"
        )
    return f"weights chosen on out-of-fold {metric}"


def model_dir_page(model_dir: str | os.PathLike[str], *, url: str | None = None) -> str:
    """The page for a model directory (verified against its manifest's checksums first).

    With ``url`` (a storage), the studies the voter came from are drawn too; one that is gone from
    the storage is named and skipped.
    """
    from emotune.search._study import StudyError
    from emotune.search.vote import _modeldir

    manifest = _modeldir.verify(model_dir)
    sections = ensemble_sections(manifest)
    if url is not None:
        for name in manifest.get("studies", []):
            try:
                sections.append(study_section(url, name))
            except StudyError as exc:
                sections.append(Section(f"study {name}", [f"<p>{html.escape(str(exc))}</p>"]))
    return render(
        f"emotune ensemble {Path(model_dir).name}",
        sections,
        subtitle=f"Model directory {Path(model_dir).absolute()}.",
    )


def ensemble_page(url: str, manifest: Mapping[str, Any]) -> str:
    """The page ``ensemble`` writes into its model directory: the studies, then the ensemble."""
    sections = [study_section(url, n) for n in manifest.get("studies", [])]
    return render("emotune ensemble", [*ensemble_sections(manifest), *sections])


# --- evaluation -----------------------------------------------------------------------------------


def _label(row: Mapping[str, Any]) -> str:
    """A model's name in an evaluation, with its normalisation when the evaluation ran both."""
    return str(row["model"]) + (" (speaker-normalised)" if row.get("speaker_norm") is True else "")


def tick_labels(names: Sequence[str], width: int = 16) -> list[str]:
    """Axis labels that do not run into each other: long names wrapped onto lines of ``width``.

    Lines break after a space, ``-``, ``_``, ``+`` or ``#`` (``"logreg (speaker-normalised)"`` ->
    ``"logreg\n(speaker-\nnormalised)"``), and inside a part longer than ``width``.
    """
    import re

    out = []
    for name in names:
        lines = [""]
        for part in re.findall(r"[^ \-_+#]*[ \-_+#]?", str(name)):
            while len(part) > width:  # a part alone too long: cut it
                lines += [part[:width], ""]
                part = part[width:]
            if lines[-1] and len(lines[-1].rstrip()) + len(part.rstrip()) > width:
                lines.append("")
            lines[-1] += part
        out.append("\n".join(line.strip() for line in lines if line.strip()))
    return out


def _scores_png(summary: Sequence[Mapping[str, Any]], folds: Sequence[Mapping[str, Any]]) -> bytes:
    """Bars of each model's test accuracy and UAR (mean ± std over outer folds), each fold's UAR as a dot."""
    return png_bytes(scores_figure(summary, folds))


def scores_figure(summary: Sequence[Mapping[str, Any]], folds: Sequence[Mapping[str, Any]]) -> Any:
    """The figure of :func:`_scores_png`; model names wrapped (and turned when many) so none overlap."""
    models = [_label(s) for s in summary]
    fig = figure(*WIDE)
    ax = fig.add_subplot()
    x = np.arange(len(models))
    for j, (key, label) in enumerate((("accuracy", "accuracy"), ("uar", "UAR"))):
        ax.bar(
            x + (j - 0.5) * 0.38,
            [s[f"{key}_mean"] for s in summary],
            0.38,
            yerr=[s[f"{key}_std"] for s in summary],
            capsize=4,
            label=f"test {label} (mean ± std)",
        )
    for f in folds:
        for r in f["rows"]:
            if _label(r) in models:
                ax.plot(models.index(_label(r)) + 0.19, r["test_uar"], "k.", ms=5)
    many = len(models) > 8  # wrapped names fit side by side up to about eight models at this width
    ax.set_xticks(x, tick_labels(models), fontsize=8, rotation=90 if many else 0)
    ax.set(
        ylim=(0, 1.05), ylabel="score", title="test scores per model over outer folds (dots: each fold's UAR)"
    )
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig


def evaluation_sections(doc: Mapping[str, Any]) -> list[Section]:
    """The page's sections for an ``evaluate --json`` document."""
    st = doc.get("settings", {})
    summary = doc.get("summary", [])
    folds = doc.get("folds", [])
    sec = Section("nested evaluation")
    sec.text(
        f"{st.get('files')} files, {st.get('speakers')} speakers; spaces {', '.join(st.get('spaces', []))}; "
        f"{st.get('outer_folds')} outer folds ({st.get('protocol')}), inner {st.get('inner_folds')}-fold CV, "
        f"up to {st.get('trials')} trials per search, metric {st.get('metric')}, target {st.get('target')}."
    )
    sec.table(
        ["model", "folds", "test acc mean", "test acc std", "test UAR mean", "test UAR std"],
        [
            [_label(s), s["folds"], s["accuracy_mean"], s["accuracy_std"], s["uar_mean"], s["uar_std"]]
            for s in summary
        ],
        "test scores over outer folds",
    )
    sec.image(_scores_png(summary, folds), "test scores per model")
    table = []
    for f in folds:
        for r in f["rows"]:
            table.append(
                [
                    f["fold"],
                    ", ".join(f.get("test_speakers", [])),
                    _label(r),
                    r.get("train_accuracy"),
                    r.get("cv_accuracy"),
                    r.get("cv_uar"),
                    r.get("test_accuracy"),
                    r.get("test_uar"),
                ]
            )
    sec.table(
        ["fold", "test speakers", "model", "train acc", "CV acc", "CV UAR", "test acc", "test UAR"],
        table,
        "train / CV / test per outer fold",
    )
    out = [sec]
    summed, classes = _summed_confusions(folds)
    if summed:
        conf = Section("confusion matrices on the held-out speakers, summed over outer folds")
        conf.grid(
            [
                (confusion_png(m, classes, f"{name} (test, all folds)"), f"confusion matrix of {name}")
                for name, m in summed.items()
            ]
        )
        conf.image(
            recall_png({n: recall_of(m) for n, m in summed.items()}, classes, "recall per class, all folds"),
            "per-class recall",
        )
        out.append(conf)
    for f in folds:
        for voter in (r for r in f["rows"] if r["model"] == "voter"):
            if not voter.get("weights"):
                continue
            name = f"outer fold {f['fold']}: {_label(voter)}"
            w = Section(name)
            w.image(weights_png(voter["weights"], f"{name} weights"), f"{name} weights")
            out.append(w)
    return out


def _summed_confusions(folds: Sequence[Mapping[str, Any]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each model's test confusion matrix summed over folds (empty when folds differ in classes)."""
    classes: list[str] | None = None
    summed: dict[str, np.ndarray] = {}
    for f in folds:
        for r in f["rows"]:
            if r.get("test_confusion") is None or not r.get("classes"):
                continue
            if classes is None:
                classes = list(r["classes"])
            elif list(r["classes"]) != classes:
                return {}, []
            m = np.asarray(r["test_confusion"], dtype=np.int64)
            summed[_label(r)] = summed.get(_label(r), 0) + m
    return summed, classes or []


def write_evaluation_report(doc: Mapping[str, Any], out: str | os.PathLike[str]) -> Path:
    """Write the page of an evaluation result (``EvaluateResult.to_json()``) to ``out`` atomically."""
    check_out(out)
    return write_atomic(out, evaluation_doc_page(doc).encode("utf-8"))


def check_out(out: str | os.PathLike[str]) -> Path:
    """Refuse an ``--out`` that emotune may not write, before any work.

    Allowed: a new file in an existing folder, or a page emotune wrote before (its generator tag).
    Refused: a folder, a file in a missing folder, and any other existing file (it is not replaced).
    """
    target = Path(out)
    if target.is_dir():
        raise VizError(f"--out {target}: is a folder; give the HTML file to write")
    if not target.absolute().parent.is_dir():
        raise VizError(f"--out {target}: folder {target.absolute().parent} does not exist")
    if (target.exists() or target.is_symlink()) and not is_report(target):
        raise VizError(
            f"--out {target}: exists and is not a page emotune wrote; give a new file name (nothing was replaced)"
        )
    return target


def is_report(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file that begins like a page :func:`render` wrote."""
    p = Path(path)
    if p.is_symlink() or not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"<!DOCTYPE html>") and (
        f'<meta name="generator" content="{GENERATOR}">'.encode() in head
        or b"<title>emotune " in head  # pages of emotune before the generator tag
    )


def evaluation_page(path: str | os.PathLike[str]) -> str:
    """The page for an ``evaluate --json`` file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VizError(f"{path}: not readable as JSON ({exc})".splitlines()[0]) from None
    if not isinstance(doc, dict) or not {"settings", "summary", "folds"} <= set(doc):
        raise VizError(f"{path}: not an `emotune evaluate --json` result (needs settings, summary and folds)")
    try:
        return evaluation_doc_page(doc, subtitle=f"Evaluation {Path(path).absolute()}.")
    except VizError as exc:
        raise VizError(f"{path}: {exc}") from None


def evaluation_doc_page(doc: Mapping[str, Any], *, subtitle: str = "") -> str:
    try:
        sections = evaluation_sections(doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise VizError(f"evaluation result is missing or has a malformed field ({exc!r})") from None
    return render("emotune evaluation", sections, subtitle=subtitle)


# --- the command ----------------------------------------------------------------------------------


def studies_page(url: str, names: Sequence[str]) -> str:
    """The page for one or more studies."""
    if not names:
        raise VizError("give at least one study")
    return render(
        f"emotune studies: {', '.join(names)}",
        [study_section(url, n) for n in names],
    )


def write_report(
    sources: Sequence[str],
    out: str | os.PathLike[str],
    *,
    storage: str | None = None,
    png_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the page for ``sources`` to ``out`` atomically and return its path.

    ``sources`` is one model directory, or one ``evaluate --json`` file, or study names in
    ``storage`` (a URL; default ``$EMOTUNE_STORAGE``, else the embedded server). A model directory's
    studies are drawn too when a storage is given (``storage`` or ``$EMOTUNE_STORAGE``). With
    ``png_dir``, every picture of the page is also written there as a PNG named after its caption.

    Raises:
        VizError, ModelDirError, StudyError: a source that is missing or unusable (one line).
    """
    target = check_out(out)
    if png_dir is not None:
        from emotune.search.viz._common import check_dir

        check_dir(png_dir, flag="--png-dir")  # before any work; created only when the page is made
    paths = [Path(s) for s in sources]
    if len(sources) == 1 and paths[0].is_dir():
        from emotune.search._storage import normalize_url

        given = storage or os.environ.get("EMOTUNE_STORAGE")
        page = model_dir_page(paths[0], url=normalize_url(given) if given else None)
    elif len(sources) == 1 and paths[0].is_file():
        page = evaluation_page(paths[0])
    else:
        for s, p in zip(sources, paths, strict=True):
            if p.exists():
                raise VizError(
                    f"{s}: give one model directory, one evaluation JSON or study names, not a mix"
                )
        from emotune.search._storage import resolve_url

        page = studies_page(resolve_url(storage), sources)
    if png_dir is not None:
        save_images(page, png_dir)
    return write_atomic(target, page.encode("utf-8"))


def save_images(page: str, folder: str | os.PathLike[str]) -> list[Path]:
    """Write every embedded PNG of ``page`` into ``folder`` as ``<caption>.png`` (atomically).

    ``folder`` follows the rule of every output folder (:mod:`emotune.features._outdir`).
    """
    import re

    from emotune.search.viz._common import out_dir

    out = out_dir(folder, flag="--png-dir")  # new, empty, or figures emotune wrote: never a foreign folder
    written = []
    for data, alt in re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page):
        stem = re.sub(r"[^A-Za-z0-9]+", "_", html.unescape(alt)).strip("_")[:80] or "figure"
        written.append(write_atomic(out / f"{stem}.png", base64.b64decode(data)))
    return written
