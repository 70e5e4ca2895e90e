"""Plain-text and JSON helpers shared by the library and the command line (no argparse here)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["emotune_version", "json_clean", "table"]


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


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emotune_version() -> str:
    """The installed emotune's version (``0+unknown`` in a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emotune")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"
