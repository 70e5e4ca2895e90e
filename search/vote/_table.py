"""An ensemble in words and pictures: its train / CV / test table, confusion matrices, summary."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from emotune.search.vote._ensemble import EnsembleResult


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _weight(row: Mapping[str, Any], stacked: bool) -> str:
    """A row's weight; a stacked voter's members have none ("stacked": in the voter, "-": not)."""
    if stacked and row.get("member") != "voter":
        return "stacked" if row.get("in_voter", row.get("weight")) else "-"
    weight = row.get("weight")
    return "-" if weight is None else f"{weight:.2f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table: per member and for the voter, train / CV / test accuracy, CV and test UAR.

    CV = pooled out-of-fold predictions on the training part (for the voter: its blend of them).
    A stacked voter's members have no weights: their column says whether the voter holds them.
    """
    from emotune.search._text import table

    header = ["model", "space", "weight", "train acc", "CV acc", "CV UAR", "test acc", "test UAR"]
    stacked = bool(rows) and rows[-1].get("voter_kind") == "stacked"
    body = [
        [
            r["member"],
            r["space"],
            _weight(r, stacked),
            _f(r["train_accuracy"]),
            _f(r["cv_accuracy"]),
            _f(r["cv_uar"]),
            _f(r["test_accuracy"]),
            _f(r["test_uar"]),
        ]
        for r in rows
    ]
    return table(header, body)


def _abbreviations(classes: Sequence[str]) -> list[str]:
    """Short unique column names: ``surprised_female`` -> ``sur_f``; numbers if they collide."""
    short = ["_".join(part[: 3 if j == 0 else 1] for j, part in enumerate(c.split("_"))) for c in classes]
    if len(set(short)) == len(short):
        return short
    return [str(i + 1) for i in range(len(classes))]


def format_confusion(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as text: rows true classes (full names), columns predicted."""
    from emotune.search._text import table

    cols = _abbreviations(classes)
    header = ["true \\ predicted", *cols]
    body = [[c, *[str(v) for v in row]] for c, row in zip(classes, matrix.tolist(), strict=True)]
    return table(header, body)


def _cm_title(voter_row: Mapping[str, Any], n_test: int) -> str:
    return (
        f"voter on {n_test} test files: accuracy {voter_row['test_accuracy']:.3f}, "
        f"UAR {voter_row['test_uar']:.3f}"
    )


def confusion_png(matrix: np.ndarray, classes: Sequence[str], *, title: str) -> bytes:
    """The confusion matrix as a PNG (matplotlib, Agg backend), counts in every cell."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    n = len(classes)
    size = max(4.5, 0.55 * n + 2.5)
    fig = Figure(figsize=(size, size * 0.9), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=list(classes), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=list(classes), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    top = matrix.max() if matrix.size else 0
    for (r, c), v in np.ndenumerate(matrix):
        ax.text(c, r, str(v), ha="center", va="center", fontsize=7, color="white" if v > top / 2 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _voter_line(m: Mapping[str, Any]) -> str:
    sel, voter = m["selection"], m.get("voter") or {"kind": "greedy"}
    cv = ", ".join(f"{k} {v:.4f}" for k, v in voter.get("cv_scores", {}).items())
    if voter["kind"] == "stacked":
        return (
            f"voter: stacked (multinomial logistic regression, C={voter['meta_C']:g}, on the members' "
            f"out-of-fold log-probabilities), chosen by cross-validation on out-of-fold {m['metric']}: {cv}"
        )
    return (
        f"weights: greedy selection with replacement on out-of-fold {m['metric']} "
        f"({sel['oof_score']:.4f}, best single member {sel['best_member_oof_score']:.4f})"
        + (f"; chosen over stacking by cross-validation: {cv}" if cv else "")
    )


def describe(result: EnsembleResult) -> str:
    """The text report of an ensemble: the table, the confusion matrix and where it was written."""
    m = result.manifest
    lines = [
        f"ensemble of {len(m['studies'])} studies ({', '.join(m['studies'])}): target {m['target']} "
        f"({len(m['classes'])} classes), protocol {m['protocol']}, {m['n_train']} training / {m['n_test']} test files"
        + (f" (test speakers {', '.join(m['test_speakers'])})" if m["protocol"] == "actor" else ""),
        _voter_line(m),
        "",
        format_table(result.rows),
    ]
    if result.confusion is not None:
        lines += ["", "confusion matrix of the voter on the test files (rows: true, columns: predicted):", ""]
        lines.append(format_confusion(result.confusion, result.classes))
    if result.out is not None:
        lines += ["", f"wrote {result.out}: manifest.json, {', '.join(sorted(m.get('files', {})))}"]
    return "\n".join(lines)
