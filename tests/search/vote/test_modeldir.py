"""Model directories: atomic writes (killed for real at every step), checksums, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from emotune.features import EmotuneError, feature_params
from emotune.search.vote import _modeldir as md
from emotune.search.vote._ensemble import voter_bytes
from emotune.search.vote._voter import SoftVoter


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.array(["sad", "angry", "happy"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1).astype(int)]
    voter = SoftVoter([("nb", GaussianNB()), ("lr", LogisticRegression())], weights=[1, 3]).fit(X, y)
    return voter, X


def _manifest(note: str = "first") -> dict:
    return {
        "note": note,
        "classes": ["angry", "happy", "sad"],
        "inputs": {"classic": {"feature_params": feature_params("classic")}},
    }


def _write(out: Path, voter, note: str = "first", **kw) -> Path:
    files = {md.VOTER_FILE: voter_bytes(voter), md.CONFUSION_PNG: b"\x89PNG not really"}
    return md.write(out, files, _manifest(note), **kw)


def test_round_trip(tmp_path, fitted):
    voter, X = fitted
    out = _write(tmp_path / "model", voter)
    assert sorted(p.name for p in out.iterdir()) == sorted([md.MANIFEST, md.VOTER_FILE, md.CONFUSION_PNG])
    loaded, manifest = md.load(out)
    np.testing.assert_array_equal(loaded.predict_proba(X), voter.predict_proba(X))
    assert manifest["note"] == "first"
    assert manifest["files"][md.VOTER_FILE] == md.sha256_file(out / md.VOTER_FILE)
    assert not list(tmp_path.glob(".model.*")), "no temporary directory left behind"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda d: (d / md.VOTER_FILE).open("ab").write(b"x"), "does not match its sha256"),
        (lambda d: (d / md.CONFUSION_PNG).unlink(), "missing file confusion_matrix.png"),
        (lambda d: (d / "notes.txt").write_text("hi"), "unlisted file notes.txt"),
        (lambda d: (d / "sub").mkdir(), "unexpected folder sub"),
        (lambda d: (d / ".incomplete").write_text(""), "incomplete model directory"),
        (lambda d: (d / md.MANIFEST).unlink(), "no manifest.json"),
        (lambda d: (d / md.MANIFEST).write_text("{"), "unreadable"),
        (
            lambda d: (d / md.MANIFEST).write_text(
                (d / md.MANIFEST).read_text().replace('"note": "first"', '"note": "edited"')
            ),
            "modified after it was written",
        ),
    ],
)
def test_tampered_directory_is_refused(tmp_path, fitted, tamper, reason):
    out = _write(tmp_path / "model", fitted[0])
    md.verify(out)
    tamper(out)
    with pytest.raises(md.ModelDirError, match=reason):
        md.load(out)


def test_checksum_of_a_re_signed_manifest_still_checks_files(tmp_path, fitted):
    out = _write(tmp_path / "model", fitted[0])
    (out / md.VOTER_FILE).write_bytes(b"evil")
    doc = json.loads((out / md.MANIFEST).read_text())
    doc["checksum"] = md.manifest_checksum(doc)  # someone fixes the manifest checksum but not the files
    (out / md.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(md.ModelDirError, match="voter.joblib: does not match"):
        md.verify(out)


def test_existing_output(tmp_path, fitted):
    voter = fitted[0]
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty", voter)  # an empty folder is fine
    with pytest.raises(md.ModelDirError, match="not empty.*--force"):
        _write(tmp_path / "empty", voter, note="second")
    _write(tmp_path / "empty", voter, note="second", force=True)
    assert md.verify(tmp_path / "empty")["note"] == "second"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "file").write_text("x")
    with pytest.raises(md.ModelDirError, match="not a folder"):
        _write(tmp_path / "file", voter, force=True)
    with pytest.raises(md.ModelDirError, match="no such model directory"):
        md.verify(tmp_path / "nothing")


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    "foreign",
    [
        {"src/a.py": b"print('mine')\n"},  # a project
        {"notes.txt": b"not a model"},
        {md.MANIFEST: b'{"format": "something else"}', md.VOTER_FILE: b"x"},  # another tool's manifest
        {md.MANIFEST: b"{"},  # unreadable
    ],
)
def test_force_never_replaces_a_folder_that_is_not_a_model_directory(tmp_path, fitted, foreign):
    out = tmp_path / "x"
    for name, data in foreign.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    before = _tree(out)
    with pytest.raises(
        EmotuneError, match=r"--out .*x: folder is not empty and not an earlier output"
    ) as err:
        _write(out, fitted[0], force=True)
    assert "\n" not in str(err.value) and "--force replaces only a model directory" in str(err.value)
    assert _tree(out) == before  # nothing deleted, nothing written into it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no temporary folder beside it


def test_force_keeps_a_model_directory_someone_added_files_to(tmp_path, fitted):
    """A model directory is recognised by its manifest and by holding only the files it lists."""
    out = _write(tmp_path / "model", fitted[0])
    assert md.is_model_dir(out)
    (out / "my-notes.txt").write_text("keep me")
    assert not md.is_model_dir(out)
    with pytest.raises(EmotuneError, match="holds confusion_matrix.png, manifest.json, my-notes.txt"):
        _write(out, fitted[0], note="second", force=True)
    assert (out / "my-notes.txt").read_text() == "keep me"
    (out / "my-notes.txt").unlink()
    (out / md.VOTER_FILE).write_bytes(b"damaged")  # damaged, still emotune's: --force replaces it
    _write(out, fitted[0], note="second", force=True)
    assert md.verify(out)["note"] == "second"


def test_feature_parameters_must_match_this_emotune():
    params = feature_params("classic")
    md.check_feature_params(params)
    with pytest.raises(md.ModelDirError, match="version 999"):
        md.check_feature_params({**params, "version": 999})
    with pytest.raises(md.ModelDirError, match="'n_mfcc' is 13 in the model but 40 here|not supported"):
        md.check_feature_params({**params, "n_mfcc": 13, "extra": 1})
    with pytest.raises(md.ModelDirError, match="unknown to this emotune"):
        md.check_feature_params({"set": "wav2vec", "version": 1})


_KILLER = textwrap.dedent(
    """
    import os, pathlib, signal, sys
    from emotune.search.vote import _modeldir as md

    out, payload, note, kill_at, force = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
    steps = [0]

    def step(fn):
        def wrapped(*args, **kwargs):
            steps[0] += 1
            if steps[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # a real kill -9, right before this step
            return fn(*args, **kwargs)
        return wrapped

    md._write_synced = step(md._write_synced)
    md._fsync_dir = step(md._fsync_dir)
    os.replace = step(os.replace)
    pathlib.Path.unlink = step(pathlib.Path.unlink)
    files = {md.VOTER_FILE: pathlib.Path(payload).read_bytes(), md.CONFUSION_PNG: b"png"}
    manifest = {"note": note, "inputs": {}}
    md.write(out, files, manifest, force=force)
    print(steps[0])
    """
)


def _run_killer(
    tmp_path: Path, out: Path, note: str, kill_at: int, force: bool
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    return subprocess.run(
        [
            sys.executable,
            str(script),
            str(out),
            str(tmp_path / "payload"),
            note,
            str(kill_at),
            "1" if force else "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _accepted(out: Path) -> dict | None:
    try:
        return md.verify(out)
    except md.ModelDirError:
        return None


@pytest.mark.parametrize("force", [False, True])
def test_a_writer_killed_at_any_step_leaves_nothing_accepted(tmp_path, fitted, force):
    (tmp_path / "payload").write_bytes(voter_bytes(fitted[0]) * 20)
    out = tmp_path / "model"
    if force:
        md.write(out, {md.VOTER_FILE: b"old"}, {"note": "old", "inputs": {}})
    full = _run_killer(tmp_path, tmp_path / "probe", "probe", 0, False)  # count the steps of a whole write
    assert full.returncode == 0, full.stderr
    n_steps = int(full.stdout) + (1 if force else 0)  # forcing adds one step: moving the old one aside
    for kill_at in range(1, n_steps + 1):
        proc = _run_killer(tmp_path, out, "new", kill_at, force)
        assert proc.returncode == -9, (kill_at, proc.stderr)
        # Leftovers are hidden siblings only, and none of them is accepted as the new model.
        for left in tmp_path.glob(".model.*"):
            for d in [left, *left.iterdir()]:
                assert _accepted(d) is None or _accepted(d)["note"] == "old"
        manifest = _accepted(out)  # verify() also recovers what the dead writer left
        if kill_at < n_steps:  # killed before the marker was deleted: never the new model
            if force:  # and the model it was replacing is back in place, never lost
                assert manifest is not None and manifest["note"] == "old", kill_at
            else:
                assert manifest is None, kill_at
            if manifest is None and out.exists():
                with pytest.raises(md.ModelDirError, match="incomplete"):
                    md.verify(out)
        else:  # killed after the last content step: the write had completed
            assert manifest is not None and manifest["note"] == "new"
        md.recover(out)  # what the next write does first
        assert not list(tmp_path.glob(".model.*")), (kill_at, "a dead writer's leftovers were not cleared")
        assert _accepted(out) == manifest  # and it changes nothing that was accepted
        # Reset for the next step.
        for left in tmp_path.glob(".model.*"):
            subprocess.run(["rm", "-rf", str(left)], check=True)
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        if force:
            md.write(out, {md.VOTER_FILE: b"old"}, {"note": "old", "inputs": {}})


def test_leftovers_of_a_live_writer_or_another_host_are_left_alone(tmp_path):
    out = tmp_path / "model"
    md.write(out, {md.VOTER_FILE: b"v"}, {"note": "x", "inputs": {}})
    live = tmp_path / f".model.tmp-{md._owner()}-abc"  # this very process: alive
    elsewhere = tmp_path / ".model.tmp-999999999@00000000-abc"  # a pid on another host
    foreign = tmp_path / ".model.tmp-notours"
    dead = tmp_path / f".model.tmp-999999999@{md._host_digest()}-abc"  # no such pid here
    for d in (live, elsewhere, foreign, dead):
        d.mkdir()
    md.recover(out)
    assert live.is_dir() and elsewhere.is_dir() and foreign.is_dir() and not dead.exists()
    assert md.verify(out)["note"] == "x"


def _resign(out: Path, edit) -> None:
    """Rewrite the manifest with ``edit`` and recompute its checksum, as an attacker would."""
    manifest = json.loads((out / md.MANIFEST).read_text())
    edit(manifest)
    manifest["checksum"] = md.manifest_checksum(manifest)
    (out / md.MANIFEST).write_text(json.dumps(manifest))


_SPACE_SOURCE = textwrap.dedent(
    """
    import pathlib
    pathlib.Path({marker!r}).write_text("imported")
    NAME = "mine"
    def suggest(trial):
        return {{}}
    def build(params, *, seed):
        raise NotImplementedError
    """
)


def test_a_space_file_outside_the_directory_is_never_imported(tmp_path, fitted):
    voter, _ = fitted
    marker = tmp_path / "ran"
    outside = tmp_path / "evil_space.py"
    outside.write_text(_SPACE_SOURCE.format(marker=str(marker)))
    out = _write(tmp_path / "model", voter)
    _resign(out, lambda m: m.update(members=[{"name": "m0", "space_path": str(outside)}]))
    with pytest.raises(md.ModelDirError, match="does not hold"):
        md.load(out, check_features=False)
    assert not marker.exists(), "predict imported a file from outside the model directory"


def test_a_member_space_is_imported_from_the_directory_copy(tmp_path, fitted):
    voter, _ = fitted
    marker = tmp_path / "ran"
    module = "_emotune_user_space_mine_copytest0"
    copy = f"space-{module}.py"
    files = {md.VOTER_FILE: voter_bytes(voter), copy: _SPACE_SOURCE.format(marker=str(marker)).encode()}
    member = {"name": "m0", "space_path": "/nowhere/mine.py", "space_file": copy, "space_module": module}
    out = md.write(tmp_path / "model", files, {**_manifest(), "members": [member]})
    md.load(out, check_features=False)
    assert marker.exists() and Path(sys.modules[module].__file__).parent == out
    (out / copy).write_text("print('changed')\n")  # the copy is covered by the checksums
    with pytest.raises(md.ModelDirError, match="does not match its sha256"):
        md.verify(out)


def test_a_keyed_manifest_refuses_rewritten_files_and_checksums(tmp_path, fitted, monkeypatch):
    voter, _ = fitted
    monkeypatch.setenv("EMOTUNE_HOME", str(tmp_path / "home"))
    unkeyed = _write(tmp_path / "unkeyed", voter)
    monkeypatch.setenv(md.KEY_ENV, "k3y-for-this-test")
    out = _write(tmp_path / "model", voter)
    assert md.verify(out)["hmac"]
    forged = voter_bytes(SoftVoter([("nb", GaussianNB())]).fit(*_xy(fitted)))
    (out / md.VOTER_FILE).write_bytes(forged)
    _resign(out, lambda m: m["files"].update({md.VOTER_FILE: md.sha256_bytes(forged)}))
    with pytest.raises(md.ModelDirError, match="manifest key"):
        md.verify(out)
    with pytest.raises(md.ModelDirError, match="manifest key"):
        md.verify(unkeyed)  # written without the key
    monkeypatch.delenv(md.KEY_ENV)
    md.verify(out)  # without a key the checksums alone are checked (documented)
    home = tmp_path / "home"
    home.mkdir()
    (home / md.KEY_FILE).write_text("other key\n")
    (home / md.KEY_FILE).chmod(0o644)
    with pytest.raises(md.ModelDirError, match="readable by other users"):
        md.verify(out)
    (home / md.KEY_FILE).chmod(0o600)
    with pytest.raises(md.ModelDirError, match="manifest key"):
        md.verify(out)


def _xy(fitted):
    voter, X = fitted
    return X, voter.predict(X)
