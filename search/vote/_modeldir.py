"""Model directories: a fitted voter, its manifest and its report, written atomically and verified.

Layout::

    MODEL_DIR/
        manifest.json           # members, weights, feature parameters, classes, metrics, versions,
                                # and the sha256 of every other file in the directory
        voter.joblib            # the fitted SoftVoter (joblib pickle)
        confusion_matrix.png    # the voter on the test split

Writing is atomic: everything goes into a hidden temporary directory beside the target (each file
and the directory fsynced), which is renamed into place in one step. The temporary directory also
holds a marker file, ``.incomplete``, that is deleted only after the rename; a reader refuses any
directory that still has it, or any file the manifest does not list. So a writer killed at any
moment (even ``kill -9``) leaves nothing :func:`load` accepts: either a hidden ``.NAME.tmp-*``
directory (with the marker), or the target with the marker, or the previous target untouched.

Leftovers of a killed writer are cleared by the next :func:`write` to the same target, and by
:func:`verify` of a target that is missing or incomplete (:func:`recover`): its hidden temporary
directory is deleted, and a previous model it had moved aside (``--force``) is put back, so a
replaced model is never lost. Leftovers whose writer still runs, or ran on another host, are left
alone: their names carry the writer's pid and a digest of its host name.

Reading verifies before it unpickles: the manifest's own checksum, every listed file's sha256, no
missing or unlisted file, and feature parameters this emotune computes identically. The checksums
catch corruption and edits, not a malicious author: a model directory is code, like any pickle;
only load model directories from people you trust. With a key (``$EMOTUNE_MANIFEST_KEY``, or the file
``$EMOTUNE_HOME/manifest.key``) the manifest also carries an HMAC-SHA256 of its content, and a
directory whose files and checksums were both rewritten (or that was written without the key) is
refused. A member's user space module is copied into the directory (checksummed like the voter)
and imported from there: nothing outside the directory is imported or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emotune.features import EmotuneError

MANIFEST = "manifest.json"
VOTER_FILE = "voter.joblib"
CONFUSION_PNG = "confusion_matrix.png"
FORMAT = "emotune-model"
FORMAT_VERSION = 1
_MARKER = ".incomplete"


class ModelDirError(EmotuneError):
    """A model directory that is missing, incomplete, modified or incompatible."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


KEY_ENV = "EMOTUNE_MANIFEST_KEY"
KEY_FILE = "manifest.key"


def manifest_key() -> bytes | None:
    """The key of keyed manifests: ``$EMOTUNE_MANIFEST_KEY``, else ``$EMOTUNE_HOME/manifest.key``, else None."""
    from emotune.features._home import home_path

    text = os.environ.get(KEY_ENV)
    if text:
        return text.encode()
    path = home_path() / KEY_FILE
    try:
        if path.stat().st_mode & 0o077:  # like ssh: a key others can read is no key
            raise ModelDirError(f"{path}: the manifest key is readable by other users: chmod 600 it")
        data = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelDirError(f"{path}: cannot read the manifest key ({exc.strerror})") from None
    if not data:
        raise ModelDirError(f"{path}: the manifest key file is empty")
    return data


def manifest_hmac(manifest: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of a manifest's canonical JSON, without its ``checksum`` and ``hmac`` fields."""
    import hmac

    body = {k: v for k, v in manifest.items() if k not in ("checksum", "hmac")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    """The sha256 of a manifest's canonical JSON, without its own ``checksum`` field."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` is a model directory emotune wrote: what ``--force`` may replace.

    Recognised by its manifest (this format, readable), and by holding nothing else than the files
    that manifest lists (and the marker of an interrupted write): a folder where anything else was
    put is not replaced, whatever its manifest says. The checksums are not needed: a model whose
    files were damaged is still emotune's to replace.
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        entries = list(path.iterdir())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return False
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return False
    own = {MANIFEST, _MARKER, *listed}
    return all(e.name in own and not e.is_symlink() and e.is_file() for e in entries)


def check_target(out: str | Path, *, force: bool = False) -> Path:
    """Refuse an ``out`` that ``ensemble`` may not write (before any work); return it absolute.

    Allowed: a missing path, an empty folder, and with ``force`` a previous model directory
    (:func:`is_model_dir`). Anything else, a file or a folder that is not a model directory, is
    refused whatever ``force`` says: nothing in it is deleted or written (the rule of every output
    folder, :mod:`emotune.features._outdir`).
    """
    from emotune.features._outdir import check_output_dir

    out = Path(out).absolute()
    if out.is_file() or out.is_symlink():
        raise ModelDirError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not is_model_dir(out):
            check_output_dir(  # the one-line refusal, --force or not
                out,
                owner="emotune ensemble",
                recognise=is_model_dir,
                hint="give a new or empty folder (--force replaces only a model directory)",
            )
        if not force:
            raise ModelDirError(f"--out {out}: folder exists and is not empty (use --force to replace it)")
    return out


def write(
    out: str | Path,
    files: Mapping[str, bytes],
    manifest: Mapping[str, Any],
    *,
    force: bool = False,
) -> Path:
    """Write a model directory atomically and return its path.

    Args:
        out: The directory to create. An empty one is replaced; a previous model directory only
            with ``force`` (it is moved aside, replaced, then deleted); any other folder is refused.
        files: File name -> bytes, every file but the manifest (plain names, no folders).
        manifest: The manifest without ``files``, ``format`` and ``checksum``: those are added here.
        force: Replace a previous model directory ``out``.

    Raises:
        ModelDirError: ``out`` is a file, or a model directory without ``force``.
        OutputDirError: ``out`` is a non-empty folder that is not a model directory.
    """
    recover(out)
    out = check_target(out, force=force)
    for name in files:
        if name in (MANIFEST, _MARKER) or "/" in name or name.startswith("."):
            raise ValueError(f"bad model file name {name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{_owner()}-", dir=out.parent))
    old: Path | None = None
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a model directory is an ordinary one
        _write_synced(tmp / _MARKER, b"written by emotune ensemble; deleted when complete\n")
        digests = {}
        for name, data in files.items():
            _write_synced(tmp / name, data)
            digests[name] = sha256_bytes(data)
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": digests}
        key = manifest_key()
        if key is not None:  # a keyed manifest: rewriting files and checksums is not enough
            doc["hmac"] = manifest_hmac(doc, key)
        doc["checksum"] = manifest_checksum(doc)
        text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
        _write_synced(tmp / MANIFEST, text.encode())
        _fsync_dir(tmp)
        if out.is_dir() and any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{_owner()}-", dir=out.parent))
            os.replace(out, old / "model")
        os.replace(tmp, out)  # replaces an empty folder, or creates out
        _fsync_dir(out.parent)
        (out / _MARKER).unlink()
        _fsync_dir(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old / "model", out)  # put the previous model back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


def recover(out: str | Path) -> None:
    """Clear what writers of ``out`` that died (killed, crashed) left beside it.

    A previous model that a dead writer had moved aside is put back when ``out`` is missing or is
    the dead writer's incomplete directory; hidden temporary directories of dead writers are deleted.
    """
    out = Path(out).absolute()
    if not out.parent.is_dir():
        return
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if not _dead(old):
            continue
        previous = old / "model"
        try:
            if previous.is_dir() and (not out.exists() or (out / _MARKER).exists()):
                if out.exists():
                    if not is_model_dir(out):  # not the dead writer's directory: never deleted
                        continue
                    shutil.rmtree(out)
                os.replace(previous, out)
                _fsync_dir(out.parent)
        except OSError:  # e.g. a read-only folder: leave everything for a writer to recover
            continue
        shutil.rmtree(old, ignore_errors=True)
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        if _dead(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _owner() -> str:
    """``PID@HOST`` for leftover names: this process and a digest of its host name."""
    return f"{os.getpid()}@{_host_digest()}"


def _host_digest() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _dead(leftover: Path) -> bool:
    """Whether the writer named in a leftover's name (``.NAME.tmp-PID@HOST-XXXX``) is gone from this host."""
    match = re.search(r"\.(?:tmp|old)-(\d+)@([0-9a-f]{8})-[^/]*$", leftover.name)
    if match is None or match.group(2) != _host_digest():
        return False  # another host's writer, or not ours: never assumed dead
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def verify(model_dir: str | Path) -> dict[str, Any]:
    """Check a model directory and return its manifest.

    Refuses (one line): no such folder, an interrupted write, no or unreadable manifest, another
    format, a manifest edited after writing, a listed file missing or not matching its sha256, or
    a file the manifest does not list.
    """
    path = Path(model_dir)
    if not path.is_dir() or (path / _MARKER).exists():
        recover(path)
    if path.is_file():
        raise ModelDirError(
            f"{path}: is a file, not a model directory (give the model directory first: "
            "emotune predict MODEL_DIR FILE...)"
        )
    if not path.is_dir():
        raise ModelDirError(f"{path}: no such model directory")
    if (path / _MARKER).exists():
        raise ModelDirError(
            f"{path}: incomplete model directory (its writer was interrupted); run ensemble again"
        )
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelDirError(f"{path}: no {MANIFEST} (not a model directory)")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{mpath}: unreadable ({exc})".splitlines()[0]) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelDirError(f"{mpath}: not an emotune model manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelDirError(
            f"{mpath}: model format {version!r} is newer than this emotune reads ({FORMAT_VERSION}): upgrade emotune"
        )
    if manifest.get("checksum") != manifest_checksum(manifest):
        raise ModelDirError(f"{mpath}: modified after it was written (its checksum does not match)")
    key = manifest_key()
    if key is not None:
        import hmac

        signed = manifest.get("hmac")
        if not isinstance(signed, str) or not hmac.compare_digest(signed, manifest_hmac(manifest, key)):
            raise ModelDirError(
                f"{mpath}: not signed with this machine's manifest key (${KEY_ENV} or "
                f"$EMOTUNE_HOME/{KEY_FILE}): written elsewhere, or modified"
            )
    listed = manifest.get("files")
    if not isinstance(listed, dict) or VOTER_FILE not in listed:
        raise ModelDirError(f"{mpath}: lists no {VOTER_FILE}")
    for name, digest in sorted(listed.items()):
        if "/" in name or name.startswith("."):
            raise ModelDirError(f"{mpath}: bad file name {name!r}")
        fpath = path / name
        if not fpath.is_file():
            raise ModelDirError(f"{path}: missing file {name} (listed in {MANIFEST})")
        if sha256_file(fpath) != digest:
            raise ModelDirError(f"{fpath}: does not match its sha256 in {MANIFEST} (modified or corrupt)")
    for entry in sorted(path.rglob("*")):
        rel = entry.relative_to(path).as_posix()
        if rel != MANIFEST and rel not in listed and not entry.is_dir():
            raise ModelDirError(f"{path}: unlisted file {rel} (not in {MANIFEST}; the directory was changed)")
        if entry.is_dir():
            raise ModelDirError(f"{path}: unexpected folder {rel} in a model directory")
    return manifest


def check_feature_params(stored: Mapping[str, Any], *, where: str = "") -> None:
    """Refuse feature parameters that this emotune would not compute identically.

    The manifest stores the full ``feature_params`` of each input (with ``set`` and ``version``).
    The current code must accept the same overrides, have the same version, and produce the same
    parameters, or the model would see other numbers than it was trained on.
    """
    from emotune.features import FEATURE_SETS, feature_params

    name = stored.get("set")
    prefix = f"{where}: " if where else ""
    if name not in FEATURE_SETS:
        raise ModelDirError(
            f"{prefix}feature set {name!r} is unknown to this emotune ({', '.join(FEATURE_SETS)})"
        )
    overrides = {k: v for k, v in stored.items() if k not in ("set", "version")}
    try:
        current = feature_params(name, **overrides)
    except EmotuneError as exc:
        raise ModelDirError(f"{prefix}{name} feature parameters are not supported here: {exc}") from None
    current = json.loads(json.dumps(current))
    if current.get("version") != stored.get("version"):
        raise ModelDirError(
            f"{prefix}made with {name} features version {stored.get('version')!r}; this emotune computes "
            f"version {current.get('version')!r}: rebuild the model (search and ensemble again)"
        )
    if current != dict(stored):
        keys = sorted(set(current) | set(stored), key=str)
        diff = next(k for k in keys if current.get(k) != stored.get(k))
        raise ModelDirError(
            f"{prefix}{name} feature parameter {diff!r} is {stored.get(diff)!r} in the model but "
            f"{current.get(diff)!r} here: rebuild the model"
        )


def _import_space_copy(model_dir: Path, manifest: Mapping[str, Any], member: Mapping[str, Any]) -> None:
    """Import a member's user space from the directory's own checksummed copy, nothing outside it.

    Its classes unpickle only once it is imported, under the module name they were pickled with.
    """
    from emotune.spaces import USER_MODULE_PREFIX, load_file_as

    name, module = member.get("space_file"), member.get("space_module")
    if not isinstance(name, str) or name not in manifest.get("files", {}):
        raise ModelDirError(
            f"{model_dir}: member {member.get('name')} needs a user space module that the directory does "
            "not hold (made by an older emotune): run ensemble again"
        )
    if not isinstance(module, str) or not re.fullmatch(re.escape(USER_MODULE_PREFIX) + r"\w+", module):
        raise ModelDirError(f"{model_dir}: member {member.get('name')}: bad space_module {module!r}")
    try:
        load_file_as(model_dir / name, module)
    except EmotuneError as exc:
        raise ModelDirError(f"{model_dir}: member {member.get('name')}: {exc}") from None


def load(model_dir: str | Path, *, check_features: bool = True) -> tuple[Any, dict[str, Any]]:
    """Verify a model directory, then load its voter: ``(voter, manifest)``."""
    import joblib

    manifest = verify(model_dir)
    if check_features:
        for key, spec in sorted(manifest.get("inputs", {}).items()):
            check_feature_params(spec["feature_params"], where=f"{model_dir} input {key}")
    for member in manifest.get("members", []):
        if member.get("space_path"):
            _import_space_copy(Path(model_dir), manifest, member)
    try:
        voter = joblib.load(Path(model_dir) / VOTER_FILE)
    except Exception as exc:  # a library too old/new to unpickle it, a missing space module
        raise ModelDirError(
            f"{Path(model_dir) / VOTER_FILE}: cannot be loaded here ({type(exc).__name__}: {exc})".splitlines()[
                0
            ]
        ) from None
    return voter, manifest
