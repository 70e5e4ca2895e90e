"""The whole product in a few minutes: corpus -> features -> searches -> voter -> export -> predict.

Runs on the embedded PostgreSQL (or ``$EMOTUNE_STORAGE``) and a local Ray (or ``$RAY_ADDRESS``),
exactly the code paths of the separate commands, and ends with a summary of where everything went.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_SPACES = ("knn", "logreg", "mlp")
SYNTH_ACTORS = 4
TRIALS_SYNTH = 12
TRIALS_DATA = 8
PREDICT_FILES = 6
DEMO_OWNER = "emotune demo"  # the marker of the demo's --out folder (emotune.features._outdir)


class _Steps:
    """``[k/N] what`` lines on stderr, with the time each step took."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.k = 0
        self.t0 = time.perf_counter()
        self.last = self.t0

    def start(self, what: str) -> None:
        self.k += 1
        print(f"\n[{self.k}/{self.total}] {what}", file=sys.stderr, flush=True)
        self.last = time.perf_counter()

    def done(self, what: str) -> None:
        print(f"      {what} ({time.perf_counter() - self.last:.1f} s)", file=sys.stderr, flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def run_demo(
    *,
    out: Path,
    data: Path | None = None,
    trials: int | None = None,
    workers: int = 2,
    spaces: Sequence[str] = DEMO_SPACES,
) -> dict[str, Any]:
    """Run the demo; returns what was written (also printed as the final summary)."""
    from emotune.features import build, default_cache_dir, scan
    from emotune.features._outdir import check_output_dir, prepare_output_dir
    from emotune.search._storage import embedded_dir, redact, resolve_url
    from emotune.search._study import StudyError
    from emotune.search.vote._ensemble import build_ensemble
    from emotune.search.vote._table import describe

    out = out.absolute()
    n_trials = trials or (TRIALS_DATA if data else TRIALS_SYNTH)
    if n_trials < 1:
        raise StudyError(f"--trials {n_trials} must be at least 1")
    if data is not None and not data.exists():
        raise StudyError(f"--data {data}: no such folder")
    # --out is new, empty or an earlier demo's: nothing else is ever written into or deleted.
    check_output_dir(out, owner=DEMO_OWNER)
    _check_demo_parts(out, synthetic=data is None)
    prepare_output_dir(out, owner=DEMO_OWNER)
    steps = _Steps(7)

    data = _corpus(steps, out, data)  # 1

    steps.start("storage: the embedded PostgreSQL (no --storage)")  # 2
    url = resolve_url(None)
    steps.done(f"{redact(url)}")

    # 3. features (a warm cache neither decodes nor starts Ray)
    steps.start("features: classic (MFCC, chroma, mel means), cached by content")
    report = build(scan([str(data)]).rows, sets=("classic",), progress=True)
    steps.done(
        f"{report.files} files: {report.built} built, {report.cached} cached, {len(report.failed)} failed"
    )

    studies, summaries = _search_spaces(steps, spaces, data, url, n_trials=n_trials, workers=workers)  # 4

    steps.start("ensemble: greedy weights on out-of-fold probabilities, refit, test once")  # 5
    model_dir = out / "model"
    result = build_ensemble(url, studies, model_dir, force=True)
    print("\n" + describe(result) + "\n", flush=True)
    steps.done(f"model directory {model_dir}")

    exported = _export_studies(steps, url, studies, spaces, out / "best")  # 6
    predictions_path = _predict_held_out(steps, url, studies[0], model_dir, out)  # 7

    written = {
        "data": str(data),
        "feature cache": str(default_cache_dir()),
        "storage": redact(url)
        + ("" if os.environ.get("EMOTUNE_STORAGE") else f" (embedded, data in {embedded_dir()})"),
        "studies": ", ".join(studies),
        "model directory": str(model_dir),
        "confusion matrix": str(model_dir / "confusion_matrix.png"),
        "best params": ", ".join(str(p) for p in exported),
        "predictions": str(predictions_path),
    }
    print(f"\ndemo finished in {steps.elapsed:.0f} s", file=sys.stderr)
    _print_where_everything_is(written, result.rows[-1], model_dir)
    return {"written": written, "studies": studies, "summaries": summaries, "seconds": steps.elapsed}


def _check_demo_parts(out: Path, *, synthetic: bool) -> None:
    """Refuse an earlier demo folder whose parts were replaced by something the demo did not write.

    ``model`` is replaced only when it is a model directory (``ensemble --force``'s rule) and
    ``data`` only when it is a synthetic corpus (``corpus synth``'s rule); ``best`` holds the
    demo's own JSON files. Checked before any work, so a refusal leaves everything as it was.
    """
    from emotune.features._outdir import check_output_dir
    from emotune.features._synth import SYNTH_OWNER
    from emotune.search.vote._modeldir import is_model_dir

    check_output_dir(out / "model", owner="emotune ensemble", recognise=is_model_dir)
    if synthetic:
        check_output_dir(out / "data", owner=SYNTH_OWNER)
    check_output_dir(out / "best", owner=DEMO_OWNER)


def _corpus(steps: _Steps, out: Path, data: Path | None) -> Path:
    """Step 1: the corpus folder: ``data`` as given, or a synthetic one written under ``out``."""
    from emotune.features import synthesize

    if data is None:
        steps.start(f"synthetic corpus: {SYNTH_ACTORS} actors, RAVDESS naming")
        data = out / "data"
        files = synthesize(data, actors=SYNTH_ACTORS, seed=0)
        steps.done(f"{len(files)} files in {data}")
        return data
    steps.start(f"corpus: {data}")
    steps.done("using it as is")
    return data.absolute()


def _search_spaces(
    steps: _Steps, spaces: Sequence[str], data: Path, url: str, *, n_trials: int, workers: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """Step 4: one study per space (named for this run); their names and run summaries."""
    from emotune.search import _search

    run_id = time.strftime("%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
    steps.start(f"search: {', '.join(spaces)}, {n_trials} trials each, {workers} Ray workers")
    studies = []
    summaries = []
    for space in spaces:
        name = f"demo-{space}-{run_id}"
        prep = _search.prepare(space, name, [data], url=url, progress=True)
        summary = _search.run(prep, n_trials=n_trials, workers=workers, progress=True)
        if summary.get("interrupted"):
            raise KeyboardInterrupt
        studies.append(name)
        summaries.append(summary)
        print(
            f"      {name}: {summary['complete']} complete, {summary['pruned']} pruned, {summary['fail']} failed; "
            f"best {prep.spec.metric} {summary['best_value'] if summary['best_value'] is None else round(summary['best_value'], 4)}",
            file=sys.stderr,
        )
    steps.done(f"{len(studies)} studies")
    return studies, summaries


def _export_studies(
    steps: _Steps, url: str, studies: Sequence[str], spaces: Sequence[str], best_dir: Path
) -> list[Path]:
    """Step 6: each study's best params as ``best_dir/<space>.json``."""
    from emotune.features._outdir import prepare_output_dir
    from emotune.search._export import export_best, write_atomic

    steps.start("export: best params of each study as JSON")
    prepare_output_dir(best_dir, owner=DEMO_OWNER)
    exported = []
    for name, space in zip(studies, spaces, strict=True):
        doc = export_best(url, name)
        path = best_dir / f"{space}.json"
        write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())
        exported.append(path)
    steps.done(", ".join(str(p) for p in exported))
    return exported


def _predict_held_out(steps: _Steps, url: str, study: str, model_dir: Path, out: Path) -> Path:
    """Step 7: predict held-out files (speakers the model never saw); the predictions JSON written."""
    from emotune.search import _search
    from emotune.search._export import write_atomic
    from emotune.search.cli.model import rounded
    from emotune.search.vote._predict import format_text, predict

    steps.start(f"predict: {PREDICT_FILES} held-out files with the model directory")
    _, _, sdata = _search.open_study(url, study)
    picks = _spread([int(i) for i in sdata.test_index], PREDICT_FILES)
    paths = [sdata.rows[i]["path"] for i in picks]
    truth = {sdata.rows[i]["path"]: sdata.labels[i] for i in picks}
    pred = predict(model_dir, paths, on_error=lambda p, r: print(f"{p}: {r}", file=sys.stderr))
    print(format_text(rounded(pred.predictions)))
    hits = sum(p.label == truth[p.path] for p in pred.predictions)
    predictions_path = out / "predictions.json"
    write_atomic(
        predictions_path,
        (
            json.dumps([dict(p.to_json(), true_label=truth[p.path]) for p in pred.predictions], indent=2)
            + "\n"
        ).encode(),
    )
    steps.done(f"{hits}/{len(pred.predictions)} correct; {predictions_path}")
    return predictions_path


def _print_where_everything_is(written: dict[str, str], voter: dict[str, Any], model_dir: Path) -> None:
    print("\nwhere everything is:")
    width = max(map(len, written))
    for key, value in written.items():
        print(f"  {key.ljust(width)}  {value}")
    print(
        f"\nvoter test accuracy {voter['test_accuracy']:.3f}, UAR {voter['test_uar']:.3f}\n"
        "next: emotune studies | emotune dashboard | "
        f"emotune predict {model_dir} FILE_OR_FOLDER [--json] | emotune storage stop"
    )


def _spread(items: Sequence[int], n: int) -> list[int]:
    """``n`` items spread evenly over ``items`` (all when there are fewer)."""
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]
