"""The wheel that ``pip install .`` (deploy/Dockerfile, the cluster launcher) builds holds every module.

The wheel is built from a copy of the sources (offline: the build backend is the project venv's
setuptools), installed without dependencies into a fresh venv whose dependencies come from the project
venv through a ``.pth`` line, and every ``emotune`` module it lists is imported from there, in a folder
outside the checkout, so nothing can come from the editable install or the working tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("features", "spaces", "search", "pyproject.toml", "README.md")


def _modules(wheel: Path) -> list[str]:
    """Dotted names of the ``.py`` files of a wheel (``emotune.x.__init__`` -> ``emotune.x``)."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith("emotune/") and n.endswith(".py")]
    dotted = [n[: -len(".py")].replace("/", ".") for n in names]
    return sorted(d.removesuffix(".__init__") for d in dotted)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("emotune-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel; the project venv's site-packages supply the dependencies."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # Appended after the venv's own site-packages, so the wheel's emotune is found first; the editable
    # install's finder there is a .pth of that folder, which a plain path line does not run.
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return root


def test_the_wheel_lists_every_package_of_the_sources(wheel: Path) -> None:
    modules = set(_modules(wheel))
    for folder, package in (
        ("features", "emotune.features"),
        ("spaces", "emotune.spaces"),
        ("search", "emotune.search"),
    ):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder).with_suffix("")
            dotted = ".".join((package, *relative.parts)).removesuffix(".__init__")
            assert dotted in modules, f"{path.relative_to(ROOT)} is not in the wheel"


def test_every_module_of_the_wheel_imports_from_the_installed_copy(
    wheel: Path, venv: Path, tmp_path: Path
) -> None:
    modules = _modules(wheel)
    code = textwrap.dedent(
        """
        import importlib, json, sys
        print(json.dumps({name: importlib.import_module(name).__file__ for name in sys.argv[1:]}))
        """
    )
    done = subprocess.run(
        [venv / "bin" / "python", "-c", code, *modules],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = json.loads(done.stdout.splitlines()[-1])
    assert sorted(files) == modules
    outside = {name: f for name, f in files.items() if not Path(f).resolve().is_relative_to(venv.resolve())}
    assert not outside, f"imported from outside the fresh venv: {outside}"
    cli = subprocess.run(
        [venv / "bin" / "emotune", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == 0 and "usage: emotune" in cli.stdout, cli.stderr
