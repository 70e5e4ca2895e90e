"""Small helpers shared by the command modules: storage option, tables, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any


def command(sub: Any, name: str, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand whose description and examples keep their line breaks (``help``, ``description``,
    ``epilog`` and any other ``add_parser`` keyword as given)."""
    return sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kw)  # type: ignore[no-any-return]


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data and cluster settings ``search`` and ``evaluate`` share, as keyword arguments."""
    return {
        "target": args.target,
        "protocol": args.protocol,
        "metric": args.metric,
        "seed": args.seed,
        "speaker_norm": args.speaker_norm,
        "corpus": args.corpus,
        "labels": args.labels,
        "cache_dir": args.cache,
        "ray_address": args.ray_address,
        "num_cpus": args.num_cpus,
    }


def add_storage(p: argparse.ArgumentParser) -> None:
    """``--storage URL`` (env EMOTUNE_STORAGE; default: the embedded PostgreSQL)."""
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="postgresql://user@host:port/db (env EMOTUNE_STORAGE; default: the embedded server in $EMOTUNE_HOME/pg)",
    )


def check_inputs(spaces: Sequence[str], data: Sequence[str]) -> None:
    """Spaces and data folders, checked before the storage is resolved (that may start a server).

    Raises:
        EmotuneError: An unknown space (the message lists the valid ones) or a missing data path.
    """
    from pathlib import Path

    from emotune.features._errors import FeatureError
    from emotune.spaces import get

    for space in spaces:
        get(space)
    for path in data:
        if not Path(path).exists():
            raise FeatureError(f"{path}: no such file or folder")


def json_clean(obj: Any) -> Any:
    """numpy scalars and arrays, tuples and paths as plain JSON values."""
    import numpy as np

    if isinstance(obj, dict):
        out = {str(k): json_clean(v) for k, v in obj.items()}
        path = obj.get("path")
        if isinstance(path, str) and not _is_unicode(path):
            # A file name that is not UTF-8 comes out of JSON as lone surrogates, which most readers
            # cannot map back to the file: its exact bytes go with it, in hex.
            out["path_hex"] = os.fsencode(path).hex()
        return out
    if isinstance(obj, list | tuple):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float | int | str | bool) or obj is None:
        return obj
    return str(obj)


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def print_json(obj: Any) -> None:
    """Machine-readable output: JSON on stdout and nothing else there."""
    sys.stdout.write(json.dumps(json_clean(obj), indent=2) + "\n")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
