"""Every command family that writes, against a full disk and a read-only folder, through the real CLI.

A full disk is a real one: a small tmpfs mounted for the test and filled with a file until the
kernel says ENOSPC (then, where a command must get part-way first, some room given back). A
read-only folder is a tmpfs mounted ``ro`` (``chmod 555`` does not stop root; a mount does). Each
command must end with exit status 1, exactly one error line on stderr and no traceback, and leave
nothing half-written where its output was to go: no target, no hidden temporary file beside it,
no folder it created; a read-only folder's content is unchanged; the feature cache stays usable.

Mounting needs root with CAP_SYS_ADMIN, which this project's machines (tests and CI alike) have:
without it these tests fail, naming why, rather than skip.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

EMOTUNE = str(Path(sys.executable).parent / "emotune")
ERROR_LINE = re.compile(r"^emotune: error: \S.*$")


class Disk:
    """A mounted tmpfs of ``size`` bytes at ``path``; :meth:`fill` takes its space away."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path))
        self.filler = path / "filler"

    def fill(self, leave: int = 0) -> None:
        """Write a filler file until the disk is full, then give ``leave`` bytes back."""
        chunk = b"\0" * 65536
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)
        if leave:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave))
        assert os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize <= leave + 8192

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        _mount("-o", "remount,ro", str(self.path))

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(
            f"these tests need to mount a small tmpfs (root with CAP_SYS_ADMIN): mount {' '.join(args)} "
            f"failed: {proc.stderr.strip()}"
        )


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Callable[..., Disk]]:
    """``disk(size=1 MiB)``: a fresh tmpfs under tmp_path, unmounted afterwards."""
    mounted: list[Disk] = []

    def make(size: int = 1 << 20) -> Disk:
        d = Disk(tmp_path / f"disk{len(mounted)}", size)
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        d.unmount()


def assert_one_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 1, one ``emotune: error:`` line (progress bars aside), no traceback; return the line."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in re.split(r"[\r\n]+", proc.stderr) if "error" in line.lower()]
    assert len(lines) == 1 and ERROR_LINE.match(lines[0]), proc.stderr[-2000:]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden ones too), relative, with file sizes."""
    return sorted(
        f"{p.relative_to(folder)}:{p.stat().st_size if p.is_file() else 'dir'}" for p in folder.rglob("*")
    )


def assert_nothing_written(folder: Path, *, keep: tuple[str, ...] = ("filler",)) -> None:
    """Nothing but ``keep`` in ``folder``: no output, no hidden temporary file, no created folder."""
    left = sorted(p.name for p in folder.iterdir() if p.name not in keep)
    assert left == [], left


# --------------------------------------------------------------------------------------------------
# Studies, a model directory and a corpus, made once on an ordinary disk


@pytest.fixture(scope="module")
def studies(make_study) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    names = [f"test-disk-knn-{tag}", f"test-disk-logreg-{tag}"]
    for space, name in zip(("knn", "logreg"), names, strict=True):
        make_study(space, name, trials=4)
    return names


@pytest.fixture(scope="module")
def model_dir(studies, pg_url, search_env, feature_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    proc = subprocess.run(
        [EMOTUNE, "ensemble", *studies, "--voter", "greedy", "--out", str(out)]
        + ["--cache", str(feature_cache), "--storage", pg_url],
        capture_output=True,
        text=True,
        env=search_env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture
def cli(search_env: dict[str, str], emotune_home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The real ``emotune`` with the session's Ray and a fresh EMOTUNE_HOME."""
    env = {**search_env, "EMOTUNE_HOME": str(emotune_home)}

    def run(*args: object, stdout: object = None) -> subprocess.CompletedProcess[str]:
        kw: dict[str, object] = {"stdout": stdout} if stdout is not None else {"stdout": subprocess.PIPE}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [EMOTUNE, *map(str, args)], stderr=subprocess.PIPE, text=True, env=env, timeout=600, **kw
        )

    return run


# --------------------------------------------------------------------------------------------------
# The feature cache: features build, search


def test_features_build_on_a_full_disk_stops_in_one_line_and_the_cache_stays_usable(cli, disk, ravdess):
    d = disk()
    cache = d.path / "cache"
    d.fill(leave=96 * 1024)  # room for the index and a few files' features, not for 60
    proc = cli("features", "build", ravdess / "Actor_01", "--cache", cache, "--json")
    line = assert_one_line(proc, str(cache), "full")
    assert proc.stdout == "", "no --json document for a build that failed"
    assert "--cache" in line
    # What was committed is whole: with room again, the same build completes from it and nothing fails.
    d.empty()
    proc = cli("features", "build", ravdess / "Actor_01", "--cache", cache, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["files"] == 60 and report["built"] + report["cached"] == 60 and report["failed"] == []
    assert not [p.name for p in cache.iterdir() if p.name.endswith(("-journal", ".tmp"))]


def test_features_build_into_a_read_only_folder(cli, disk, ravdess):
    d = disk()
    d.read_only()
    proc = cli("features", "build", ravdess / "Actor_01", "--cache", d.path / "cache")
    assert_one_line(proc, str(d.path / "cache"), "Read-only")
    assert_nothing_written(d.path)


@pytest.mark.parametrize("state", ["full", "read-only"])
def test_search_with_its_cache_on_a_full_or_read_only_disk_creates_no_study(
    state, cli, disk, ravdess, pg_url
):
    d = disk()
    if state == "full":
        d.fill()
    else:
        d.read_only()
    name = f"test-disk-search-{uuid.uuid4().hex[:8]}"
    proc = cli(
        "search", "logreg", "--study", name, "--data", ravdess, "--trials", "2",
        "--cache", d.path / "cache", "--storage", pg_url,
    )  # fmt: skip
    assert_one_line(proc, str(d.path / "cache"))
    listed = cli("studies", "--json", "--storage", pg_url)
    assert name not in {r["study"] for r in json.loads(listed.stdout)}


# --------------------------------------------------------------------------------------------------
# Files and folders the commands write: export, ensemble, report, plot, explore, corpus synth


def test_export_to_a_full_disk_a_read_only_folder_and_a_folder(cli, disk, studies, pg_url, tmp_path):
    full = disk()
    full.fill()
    proc = cli("export", studies[0], "--out", full.path / "new" / "best.json", "--storage", pg_url)
    assert_one_line(proc, str(full.path / "new" / "best.json"), "ENOSPC")
    assert_nothing_written(full.path)  # neither the file, its temporary, nor the folder made for it

    ro = disk()
    ro.read_only()
    proc = cli("export", studies[0], "--out", ro.path / "best.json", "--storage", pg_url)
    assert_one_line(proc, "--out", str(ro.path), "read-only")

    folder = tmp_path / "a-folder"
    (folder / "inside").mkdir(parents=True)
    proc = cli("export", studies[0], "--out", folder, "--storage", pg_url)
    assert_one_line(proc, str(folder), "is a folder")
    assert listing(folder) == ["inside:dir"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file


def test_ensemble_to_a_full_disk_and_a_read_only_folder(cli, disk, studies, pg_url, feature_cache):
    full = disk()
    full.fill()
    common = ["--voter", "greedy", "--cache", feature_cache, "--storage", pg_url]
    proc = cli("ensemble", *studies, "--out", full.path / "m", *common)
    assert_one_line(proc, str(full.path / "m"), "ENOSPC")
    assert_nothing_written(full.path)

    ro = disk()
    (ro.path / "kept.txt").write_text("mine\n")
    ro.read_only()
    before = listing(ro.path)
    proc = cli("ensemble", *studies, "--out", ro.path / "m", *common)
    assert_one_line(proc, "--out", "read-only")
    assert listing(ro.path) == before


def test_report_to_a_full_disk_and_a_read_only_folder(cli, disk, studies, pg_url, tmp_path):
    full = disk()
    full.fill()
    proc = cli("report", *studies, "--out", full.path / "r.html", "--storage", pg_url)
    assert_one_line(proc, str(full.path / "r.html"), "ENOSPC")
    assert_nothing_written(full.path)
    # The page on a good disk, its pictures on the full one: neither is left.
    page = tmp_path / "page.html"
    proc = cli("report", *studies, "--out", page, "--png-dir", full.path / "png", "--storage", pg_url)
    assert_one_line(proc, str(full.path / "png"), "ENOSPC")
    assert_nothing_written(full.path)
    assert not page.exists()

    ro = disk()
    ro.read_only()
    proc = cli("report", *studies, "--out", ro.path / "r.html", "--storage", pg_url)
    assert_one_line(proc, "--out", "read-only")


def test_plot_and_explore_to_a_full_disk_and_a_read_only_folder(cli, disk, ravdess, feature_cache):
    wav = ravdess / "Actor_01" / "03-01-05-01-01-01-01.wav"
    full = disk()
    full.fill(leave=64 * 1024)  # room for a figure or two, not for all of them
    proc = cli("plot", wav, "--out", full.path / "plot")
    assert_one_line(proc, str(full.path / "plot"), "ENOSPC")
    assert_nothing_written(full.path)
    corpus = [ravdess / "Actor_01", ravdess / "Actor_02"]
    proc = cli("explore", *corpus, "--out", full.path / "explore", "--cache", feature_cache)
    assert_one_line(proc, str(full.path / "explore"), "ENOSPC")
    assert_nothing_written(full.path)

    ro = disk()
    ro.read_only()
    for command in (["plot", wav], ["explore", *corpus, "--cache", feature_cache]):
        proc = cli(*command, "--out", ro.path / "figures")
        assert_one_line(proc, "--out", "read-only")
    assert_nothing_written(ro.path)


def test_corpus_synth_to_a_full_disk_and_a_read_only_folder(cli, disk):
    full = disk()
    full.fill(leave=256 * 1024)  # a few recordings fit, the corpus does not
    proc = cli("corpus", "synth", full.path / "synth", "--actors", "2")
    assert_one_line(proc, str(full.path / "synth"), "ENOSPC")
    assert_nothing_written(full.path)  # not a partial corpus of a few files

    ro = disk()
    ro.read_only()
    proc = cli("corpus", "synth", ro.path / "synth", "--actors", "2")
    assert_one_line(proc, "OUT", "read-only")


# --------------------------------------------------------------------------------------------------
# Standard output redirected to a full disk


def test_predict_json_to_a_file_on_a_full_disk(cli, disk, model_dir, ravdess):
    full = disk()
    out = full.path / "predictions.json"
    out.touch()
    full.fill()
    with open(out, "w") as f:
        proc = cli("predict", model_dir, ravdess / "Actor_01", "--json", stdout=f)
    assert_one_line(proc, str(out), "ENOSPC")
    # The document is made whole before it is written, and at most what fitted got out: here nothing.
    assert out.stat().st_size == 0
