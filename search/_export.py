"""Export of best trials, the study list, deletion, and the dashboard."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from emotune.features import EmotuneError
from emotune.search import _storage as st
from emotune.search._study import StudyError
from emotune.search._text import json_clean


def library_versions() -> dict[str, str]:
    """Versions of every library that changes results."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "emotune",
        "optuna",
        "ray",
        "librosa",
        "numpy",
        "scikit-learn",
        "xgboost",
        "lightgbm",
        "torch",
        "soundfile",
        "soxr",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write a file so that a reader sees the old or the new content, never a part.

    A failed write (a full disk, a read-only folder) leaves no temporary file and raises the
    :class:`OSError`, naming ``path``; a ``path`` that is a folder is refused before anything is
    written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            exc.filename = str(path)  # the file the user asked for, not the temporary one
        raise


def export_best(url: str, name: str) -> dict[str, Any]:
    """The best complete trial of a study, JSON-clean, with everything needed to reproduce it."""
    import optuna

    from emotune.search._search import open_study

    study, spec, data = open_study(url, name)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise StudyError(f"study {name!r} has no complete trial yet")
    best = study.best_trial
    spec = spec.for_trial(best.params)  # a searched feature set: the one the best trial chose
    doc = {
        "study": name,
        "space": spec.space,
        "feature_set": spec.feature_set,
        "feature_params": spec.feature_params,
        "target": spec.target,
        "protocol": spec.protocol,
        "metric": spec.metric,
        "value": best.value,
        "params": best.params,
        "trial": best.number,
        "fold_scores": best.user_attrs.get("fold_scores"),
        "uar": best.user_attrs.get("uar"),
        "accuracy": best.user_attrs.get("accuracy"),
        "train_score": best.user_attrs.get("train_score"),
        "classes": spec.classes,
        "seed": spec.seed,
        "folds": len(data.folds),
        "speaker_norm": spec.speaker_norm,
        "n_train": int(len(data.train_index)),
        "n_test": int(len(data.test_index)),
        "finished_trials": sum(
            t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
            for t in study.get_trials(deepcopy=False)
        ),
        "versions": library_versions(),
    }
    return json_clean(doc)


def list_studies(url: str) -> list[dict[str, Any]]:
    """Every study in the storage with its space, trials by state and best value."""
    import optuna

    st.ensure_schema(url)
    storage = st.make_storage(url, heartbeat=False, pool_size=1)
    out = []
    for s in optuna.get_all_study_summaries(storage=storage, include_best_trial=True):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        out.append(
            {
                "study": s.study_name,
                "space": s.user_attrs.get("space"),
                "target": s.user_attrs.get("target"),
                "complete": states.count("COMPLETE"),
                "pruned": states.count("PRUNED"),
                "fail": states.count("FAIL"),
                "running": states.count("RUNNING"),
                "best_value": s.best_trial.value if s.best_trial is not None else None,
            }
        )
    storage.engine.dispose()
    return out


def delete_study(url: str, name: str) -> None:
    """Delete a study, its trials and its blobs, in one transaction (:func:`_storage.drop_study`)."""
    if not st.drop_study(url, name):
        raise StudyError(f"no study named {name!r} in {st.redact(url)}")


class DashboardError(EmotuneError):
    """The dashboard cannot listen where it was told to (one line naming host and port)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) reaches this machine only (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def check_listen(host: str, port: int) -> None:
    """Bind ``host:port`` once and let go, so a taken port or a foreign address is one line up front.

    The server binds the same way (``SO_REUSEADDR``, as :mod:`wsgiref`'s server does), so a port in
    TIME_WAIT passes here and there alike.

    Raises:
        DashboardError: The host is unknown, not an address of this machine, or the port is in use.
    """
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise DashboardError(f"--host {host}: unknown host ({exc.strerror or exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            hint = "; choose another --port" if exc.errno == errno.EADDRINUSE else ""
            raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None


def serve_dashboard(url: str, *, host: str = "127.0.0.1", port: int = 8080) -> None:
    """optuna-dashboard on the same storage (schema created first: it crashes on an empty database).

    optuna-dashboard has no authentication: whoever reaches ``host:port`` can read, change and
    delete studies. The CLI warns when ``host`` is not a loopback address.
    """
    from optuna_dashboard import run_server

    st.ensure_schema(url)
    try:
        run_server(st.make_storage(url, heartbeat=False), host=host, port=port)
    except OSError as exc:  # taken between check_listen and the server's bind
        if exc.filename is None:
            exc.filename = f"{host}:{port}"
        raise
