"""Commands: spaces, search, studies, export, dashboard, storage."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from emotune.features import METRICS, SCHEMES
from emotune.search._study import PROTOCOLS
from emotune.search._worker import SAMPLERS
from emotune.search.cli._common import (
    add_cache,
    add_corpus,
    add_ray,
    add_storage,
    check_inputs,
    print_json,
    run_options,
    table,
)
from emotune.search.cli._ssl import add_ssl_model
from emotune.search.cli.options import FOLDS, PORT, POSITIVE, SEED, seconds
from emotune.spaces import PRUNER_ALIASES, PRUNERS

_SEARCH_EXAMPLE = """example:
  emotune search mlp --study mlp-ravdess --data ~/data/ravdess --trials 100 --workers 4
  emotune search ./my_space.py --study mine --data ~/data/ravdess --trials 20 --workers 2 \\
      --storage postgresql://user@db-host:5432/emotune --ray-address auto"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the study commands."""
    _register_spaces(sub)
    _register_search(sub)
    _register_studies(sub)
    _register_export(sub)
    _register_dashboard(sub)
    _register_storage(sub)


def _register_spaces(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "spaces",
        help="list search spaces",
        description="List the registered search spaces.",
        epilog="example: emotune spaces --json",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.set_defaults(func=cmd_spaces)


def _register_search(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "search",
        help="run a study with Ray workers on a shared storage",
        description="Run (or resume, or join) a study: W Ray workers run Optuna trials of SPACE against one "
        "shared PostgreSQL storage until the study holds exactly N finished trials.",
        epilog=_SEARCH_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "space", metavar="SPACE", help="a registered space (see `emotune spaces`) or a path to a .py module"
    )
    p.add_argument("--study", required=True, help="study name (the same name resumes or joins it)")
    p.add_argument("--data", nargs="+", default=[], metavar="DATA", help="corpus folders (one or several)")
    p.add_argument(
        "--trials", type=POSITIVE, required=True, help="finished trials the study must hold (>= 1)"
    )
    p.add_argument(
        "--workers", type=POSITIVE, default=1, help="Ray workers, >= 1 (capped at what the cluster holds)"
    )
    p.add_argument(
        "--target",
        default="emotion",
        choices=SCHEMES,
        help="label scheme: emotion, emotion_gender, valence_gender, emotion6, corpus_native",
    )
    p.add_argument(
        "--protocol",
        default="actor",
        choices=PROTOCOLS,
        help="test split: held-out speakers (default) or random 80/20",
    )
    p.add_argument("--metric", default="uar", choices=METRICS, help="objective (both are recorded)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the split, folds, samplers and models")
    p.add_argument(
        "--folds", type=FOLDS, default=5, help="cross-validation folds, >= 2 (fewer if too few speakers)"
    )
    p.add_argument(
        "--features",
        dest="feature_set",
        default=None,
        metavar="SET",
        help="feature set (default: the space's); several separated by commas, or `all` of those the "
        "space accepts, make the set part of what the study searches (see `emotune spaces`)",
    )
    p.add_argument("--speaker-norm", action="store_true", help="z-normalise features per speaker")
    p.add_argument(
        "--pruner",
        default="auto",
        choices=PRUNERS + tuple(PRUNER_ALIASES),
        help="auto (default): the space's own, else best-median; latest-median: the running mean of fold "
        "scores below the median after the same fold; best-median: Optuna's MedianPruner (the best "
        "value so far; `median` is the same); wilcoxon, hyperband: Optuna's; none",
    )
    p.add_argument("--sampler", default="tpe", choices=SAMPLERS, help="tpe (default) or random search")
    p.add_argument(
        "--timeout",
        type=seconds(),
        default=None,
        metavar="S",
        help="stop starting trials after S seconds (> 0)",
    )
    add_corpus(p)
    add_cache(p)
    p.add_argument(
        "--storage-patience",
        type=seconds(),
        default=None,  # else $EMOTUNE_STORAGE_PATIENCE_S, checked by cmd_search before it acts
        metavar="S",
        help="how long a lost storage is waited for before the search gives up "
        "(env EMOTUNE_STORAGE_PATIENCE_S; default 180)",
    )
    add_ray(p)
    add_storage(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    add_ssl_model(p)
    p.set_defaults(func=cmd_search)


def _register_studies(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "studies",
        help="list studies (or delete one)",
        description="List emotune studies in the storage.",
        epilog="example: emotune studies --json; emotune studies delete old-study",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    add_storage(p)
    p.set_defaults(func=cmd_studies)
    ssub = p.add_subparsers(dest="studies_command", metavar="delete")
    d = ssub.add_parser(
        "delete",
        help="delete a study and its stored data",
        description="Delete a study, its trials, its dataset record and its out-of-fold store. Refused "
        "while a search runs on it (a live worker or driver, or a trial with a fresh heartbeat) unless --force.",
        epilog="example: emotune studies delete old-study",
    )
    d.add_argument("name", metavar="NAME")
    d.add_argument(
        "--force",
        action="store_true",
        help="delete even while a search runs on it (its workers then stop with one line)",
    )
    add_storage(d)
    d.set_defaults(func=cmd_studies_delete)


def _register_export(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "export",
        help="write a study's best trial as JSON",
        description="Write the best trial of a study as JSON.",
        epilog="example: emotune export mlp-ravdess --out best.json",
    )
    p.add_argument("study", metavar="STUDY")
    p.add_argument("--out", required=True, help="JSON file to write ('-' for stdout)")
    add_storage(p)
    p.set_defaults(func=cmd_export)


def _register_dashboard(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "dashboard",
        help="optuna-dashboard on the same storage",
        description="Serve optuna-dashboard on the study storage (bound to 127.0.0.1 unless --host). "
        "optuna-dashboard has no authentication: any other --host starts with a warning.",
        epilog="example: emotune dashboard --port 8080",
    )
    p.add_argument("--port", type=PORT, default=8080, help="TCP port, 1..65535 (default 8080)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; anything else exposes unauthenticated studies)",
    )
    add_storage(p)
    p.set_defaults(func=cmd_dashboard)


def _register_storage(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "storage",
        help="the embedded PostgreSQL: status, start or stop",
        description="Show, start or stop the embedded PostgreSQL server ($EMOTUNE_HOME/pg); commands that need it start it themselves.",
        epilog="example: emotune storage status",
    )
    p.add_argument("action", choices=["status", "start", "stop"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--force", action="store_true", help="stop even while studies on it have RUNNING trials")
    p.set_defaults(func=cmd_storage)


def cmd_spaces(args: argparse.Namespace) -> int:
    from emotune.spaces import describe, names

    rows = [describe(n) for n in names()]
    if args.json:
        print_json(rows)
        return 0
    print(
        table(
            ["space", "features", "accepts", "resources", "steps/fold"],
            [
                [
                    r["name"],
                    r["features"],
                    ",".join(r["accepts"]),
                    _res(r["resources"]),
                    r.get("max_steps", 1),
                ]
                for r in rows
            ],
        )
    )
    print("every space that accepts functionals also reads ssl, one layer per trial (--ssl-model)")
    return 0


def _res(res: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('num_', '')}={v:g}" for k, v in res.items())


def cmd_search(args: argparse.Namespace) -> int:
    from emotune.search import _search
    from emotune.search._storage import fit_workers, heartbeat_settings, redact, resolve_url

    check_inputs([args.space], args.data)
    heartbeat_settings()  # $EMOTUNE_HEARTBEAT_S / $EMOTUNE_GRACE_S, checked before anything starts
    patience = args.storage_patience or _env_patience()
    url = resolve_url(args.storage)
    workers = fit_workers(url, args.workers)  # the server's free connections, before the study exists
    prep = _search.prepare(
        args.space,
        args.study,
        args.data,
        url=url,
        folds=args.folds,
        feature_set=args.feature_set,
        progress=not args.json,
        **run_options(args),
    )
    n_train, n_test = len(prep.data.train_index), len(prep.data.test_index)
    print(
        f"emotune: study {args.study} ({'created' if prep.created else 'resumed'}) on {redact(url)}: {prep.spec.space} on "
        f"{prep.spec.feature_set}, target {prep.spec.target} ({len(prep.spec.classes)} classes), protocol {prep.spec.protocol}: "
        f"{n_train} training files in {len(prep.data.folds)} folds, {n_test} test files held out",
        file=sys.stderr,
    )
    summary = _search.run(
        prep,
        n_trials=args.trials,
        workers=workers,
        ray_address=args.ray_address,
        num_cpus=args.num_cpus,
        timeout=args.timeout,
        pruner=args.pruner,
        sampler=args.sampler,
        progress=not args.json,
        patience=patience,
    )
    if args.json:
        print_json(summary)
    else:
        print(
            table(
                ["study", "complete", "pruned", "fail", "running", f"best {prep.spec.metric}"],
                [
                    [
                        summary["study"],
                        summary["complete"],
                        summary["pruned"],
                        summary["fail"],
                        summary["running"],
                        _fmt(summary["best_value"]),
                    ]
                ],
            )
        )
        if summary["best_params"]:
            print(f"best trial #{summary['best_trial']}: {json.dumps(summary['best_params'], default=str)}")
    if summary["interrupted"]:
        print(
            f"emotune: interrupted; run the same command again to resume study {args.study}", file=sys.stderr
        )
        return 130
    return 0


def _env_patience() -> float:
    """``$EMOTUNE_STORAGE_PATIENCE_S`` checked like ``--storage-patience`` (default 180 s).

    Raises:
        StorageError: One line naming the variable.
    """
    from emotune.search._storage import StorageError

    text = os.environ.get("EMOTUNE_STORAGE_PATIENCE_S", "").strip()
    if not text:
        return 180.0
    try:
        return seconds()(text)
    except argparse.ArgumentTypeError as exc:
        raise StorageError(f"EMOTUNE_STORAGE_PATIENCE_S: {exc}") from None


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def cmd_studies(args: argparse.Namespace) -> int:
    from emotune.search._export import list_studies
    from emotune.search._storage import resolve_url

    rows = list_studies(resolve_url(args.storage))
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no studies", file=sys.stderr)
        return 0
    print(
        table(
            ["study", "space", "target", "complete", "pruned", "fail", "running", "best"],
            [
                [
                    r["study"],
                    r["space"],
                    r["target"],
                    r["complete"],
                    r["pruned"],
                    r["fail"],
                    r["running"],
                    _fmt(r["best_value"]),
                ]
                for r in rows
            ],
        )
    )
    return 0


def cmd_studies_delete(args: argparse.Namespace) -> int:
    from emotune.search._export import delete_study
    from emotune.search._storage import heartbeat_settings, resolve_url, search_activity
    from emotune.search._study import StudyError

    grace = heartbeat_settings()[1]
    url = resolve_url(args.storage)
    if not args.force:
        busy = search_activity(url, args.name, grace=grace)
        if busy["live"] or busy["running"]:
            raise StudyError(
                f"not deleting study {args.name!r}: a search runs on it ({busy['live']} live worker or "
                f"driver session(s), {busy['running']} trial(s) with a heartbeat under {grace} s old); "
                "stop the search first, or use --force"
            )
    delete_study(url, args.name)
    print(f"deleted study {args.name}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from emotune.search._export import export_best
    from emotune.search._storage import resolve_url

    doc = export_best(resolve_url(args.storage), args.study)
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        from emotune.search._export import write_atomic

        write_atomic(args.out, text.encode())
        print(f"wrote {args.out}: trial #{doc['trial']} {doc['metric']}={doc['value']:.4f}", file=sys.stderr)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from emotune.search._export import check_listen, is_loopback, serve_dashboard
    from emotune.search._storage import redact, resolve_url

    check_listen(args.host, args.port)  # before the storage: that may start a server
    if not is_loopback(args.host):
        print(
            f"emotune: warning: optuna-dashboard has no authentication: anyone who reaches {args.host}:{args.port} "
            "can read, change and delete every study; bind 127.0.0.1 (the default) and tunnel to it "
            "(ssh -L 8080:127.0.0.1:8080 HOST) unless every machine on this network is trusted",
            file=sys.stderr,
        )
    url = resolve_url(args.storage)
    print(
        f"emotune: optuna-dashboard on {redact(url)} at http://{args.host}:{args.port}/ (Ctrl-C stops)",
        file=sys.stderr,
    )
    serve_dashboard(url, host=args.host, port=args.port)
    return 0


def cmd_storage(args: argparse.Namespace) -> int:
    from emotune.search._storage import (
        StorageError,
        embedded_status,
        embedded_stop,
        embedded_url,
        ensure_schema,
        running_studies,
    )

    if args.action == "start":
        ensure_schema(embedded_url())
        print(f"the embedded PostgreSQL runs in {embedded_status()['pgdata']}", file=sys.stderr)
        return 0
    if args.action == "stop":
        status = embedded_status()
        if status["running"] and not args.force:
            busy = running_studies(status["url"])
            if busy:
                names = ", ".join(f"{name} ({n} running)" for name, n in busy.items())
                raise StorageError(
                    f"not stopping the embedded PostgreSQL: studies with RUNNING trials on it: {names}; "
                    "stop their searches first, or use --force"
                )
        stopped = embedded_stop()
        print(
            "stopped the embedded PostgreSQL" if stopped else "the embedded PostgreSQL was not running",
            file=sys.stderr,
        )
        return 0
    status = embedded_status()
    if args.json:
        print_json(status)
    else:
        state = (
            f"running (pid {status['pid']})"
            if status["running"]
            else "stopped"
            if status["exists"]
            else "not created yet"
        )
        print(f"embedded PostgreSQL: {state}\ndata directory: {status['pgdata']}")
        if status["url"]:
            print(f"url: {status['url']}")
    return 0
