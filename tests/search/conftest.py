"""Fixtures of the search tests: a feature cache built once for the RAVDESS files, studies made on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emotune.search import Prepared, delete_study, prepare, run

EMOTUNE = str(Path(sys.executable).parent / "emotune")


@pytest.fixture(scope="session")
def ravdess(data_dir: Path) -> Path:
    return data_dir / "ravdess"


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory, ravdess: Path, ray_address: str) -> Path:
    """One feature cache (classic, classic_stats, functionals) for every search test: built once through the CLI."""
    cache = tmp_path_factory.mktemp("cache")
    proc = subprocess.run(
        [
            EMOTUNE,
            "features",
            "build",
            str(ravdess),
            "--set",
            "classic",
            "--set",
            "classic_stats",
            "--set",
            "functionals",
        ]
        + ["--cache", str(cache), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ray_address},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return cache


@pytest.fixture(scope="session")
def search_env(ray_address: str, feature_cache: Path) -> dict[str, str]:
    """Environment of a CLI search: the session's Ray, short heartbeats, the shared cache."""
    return {
        **os.environ,
        "RAY_ADDRESS": ray_address,
        "EMOTUNE_HEARTBEAT_S": "1",
        "EMOTUNE_GRACE_S": "3",
    }


@pytest.fixture(scope="module")
def make_study(
    pg_url: str, feature_cache: Path, ravdess: Path, ray_address: str
) -> Iterator[Callable[..., Prepared]]:
    """``make_study(space, name, trials, **prepare_kw)``: a study of the RAVDESS actors, searched for
    ``trials`` finished trials (2 workers; none for 0) and deleted when the module's tests are done."""
    made: list[str] = []

    def make(space: str, name: str, trials: int, **kw: Any) -> Prepared:
        made.append(name)
        prep = prepare(
            space,
            name,
            [ravdess],
            url=pg_url,
            cache_dir=feature_cache,
            ray_address=ray_address,
            progress=False,
            **kw,
        )
        if trials:
            run(prep, n_trials=trials, workers=2, ray_address=ray_address, progress=False)
        return prep

    yield make
    for name in made:
        try:
            delete_study(pg_url, name)
        except Exception:
            pass
