"""Fixtures of the search tests: a feature cache built once for the RAVDESS files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture
def search_env(ray_address: str, feature_cache: Path) -> dict[str, str]:
    """Environment of a CLI search: the session's Ray, short heartbeats, the shared cache."""
    return {
        **os.environ,
        "RAY_ADDRESS": ray_address,
        "EMOTUNE_HEARTBEAT_S": "1",
        "EMOTUNE_GRACE_S": "3",
    }
