"""Shared fixtures: the real data, the machine's PostgreSQL, one local Ray per session, the CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests judge results, never speed: no per-example deadline, which a loaded machine (another
# CPU-bound job on two cores) would miss now and then.
settings.register_profile("emotune", deadline=None)
settings.load_profile("emotune")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EMOTUNE = str(BIN / "emotune")
PG_URL = os.environ.get("EMOTUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# numba's JIT cache is shared by every process of the run (workers included), so it is paid once.
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".emotune" / "numba"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real recordings in ../shared/data (RAVDESS actors 01-04, EmoDB, TESS)."""
    path = Path(os.environ.get("EMOTUNE_TEST_DATA") or ROOT.parent / "shared" / "data")
    if not (path / "index.csv").is_file():
        pytest.fail(f"real test data not found at {path} (set EMOTUNE_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The machine's PostgreSQL. Tests fail, never skip, when it is unreachable."""
    import psycopg2

    try:
        psycopg2.connect(PG_URL.replace("postgresql://", "postgres://", 1), connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable: {exc}".splitlines()[0])
    return PG_URL


@pytest.fixture
def study_name(pg_url: str) -> Iterator[str]:
    """A unique study name, deleted from the machine's PostgreSQL afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    import optuna

    try:
        optuna.delete_study(
            study_name=name, storage=pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
        )
    except Exception:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """One local Ray head for the whole test session; exported as RAY_ADDRESS for the CLI.

    Started with ``ray start --head --block`` in its own process group, which the teardown stops:
    ``ray stop`` would stop every Ray on the machine, not just this one.
    """
    port = _free_port()
    temp = Path("/tmp") / f"ray-et-{uuid.uuid4().hex[:6]}"
    cmd = [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    cmd += [f"--temp-dir={temp}", "--disable-usage-stats", "--block"]
    head = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    address = f"127.0.0.1:{port}"
    import ray

    deadline = time.time() + 120
    while True:
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import ray; ray.init(address={address!r}, log_to_driver=False); ray.shutdown()",
            ],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0:
            break
        if head.poll() is not None or time.time() > deadline:
            head.kill()
            pytest.fail(f"could not start a local Ray head: {probe.stderr.strip().splitlines()[-1:]}")
        time.sleep(1)
    del ray
    old = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = address
    try:
        yield address
    finally:
        if old is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = old
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def emotune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh EMOTUNE_HOME for one test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("EMOTUNE_HOME", str(home))
    return home


@pytest.fixture
def run_cli():
    """Run the real `emotune` entry point; returns the CompletedProcess (text mode)."""

    def run(*args: str, check: bool = False, timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [EMOTUNE, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"emotune {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def vgg16_weights_file(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """Writes (once per seed) a torchvision-layout vgg16 state_dict of random weights; returns its path.

    The convolutional part (He-initialised, zero biases) and one classifier key, which real files hold
    and the loader ignores: 59 MB, the keys and shapes of ``torchvision.models.vgg16().state_dict()``.
    """
    folder = tmp_path_factory.mktemp("vgg")

    def write(seed: int) -> Path:
        path = folder / f"vgg16-{seed}.pth"
        if path.exists():
            return path
        import torch

        from emotune.features._vgg import VGG16_LAYOUT

        generator = torch.Generator().manual_seed(seed)
        state = {}
        in_channels, index = 3, 0
        for item in VGG16_LAYOUT:
            if item == "M":
                index += 1
                continue
            shape = (int(item), in_channels, 3, 3)
            state[f"features.{index}.weight"] = (
                torch.randn(shape, generator=generator) * (2 / (in_channels * 9)) ** 0.5
            )
            state[f"features.{index}.bias"] = torch.zeros(int(item))
            in_channels, index = int(item), index + 2
        state["classifier.6.bias"] = torch.zeros(1000)  # present in real files; ignored
        torch.save(state, path)
        return path

    return write


@pytest.fixture(scope="session")
def vgg16_weights(vgg16_weights_file: Callable[[int], Path]) -> Path:
    """A random-weights torchvision vgg16 state_dict file (seed 0); see :func:`vgg16_weights_file`."""
    return vgg16_weights_file(0)
