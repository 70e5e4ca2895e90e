"""Finds space modules: every ``spaces/<name>.py`` without a leading underscore, or a user's own ``.py`` file.

Listing is cheap: :func:`names` reads the directory, and :func:`describe` of a registered name reads the
module's literal ``NAME``/``FEATURES``/``RESOURCES``/``MAX_STEPS`` with :mod:`ast`, importing the module
only when a declaration is computed (the torch spaces ask about GPUs for ``RESOURCES``). :func:`get`
imports the module and checks the contract.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from emotune.features import FEATURE_SETS, EmotuneError

_DIR = Path(__file__).resolve().parent
_PACKAGE = __name__.rpartition(".")[0]  # "emotune.spaces"
USER_MODULE_PREFIX = "_emotune_user_space_"  # module names of spaces imported from a file
_REQUIRED = ("NAME", "suggest", "build")
_DECLARED = ("NAME", "FEATURES", "ACCEPTS", "RESOURCES", "MAX_STEPS")
DEFAULT_FEATURES = "classic"
DEFAULT_RESOURCES: dict[str, float] = {"num_cpus": 1}
DEFAULT_MAX_STEPS = 1


class SpaceError(EmotuneError):
    """An unknown space name, or a module that does not follow the space contract."""


def names() -> list[str]:
    """The registered space names, sorted: the stems of ``spaces/*.py`` not starting with ``_``.

    Example:
        >>> "knn" in names()
        True
    """
    return sorted(path.stem for path in _DIR.glob("*.py") if not path.stem.startswith("_"))


def get(name_or_path: str | os.PathLike[str]) -> ModuleType:
    """The space module for a registered name or for the path of a user's ``.py`` file.

    A path is anything ending in ``.py`` or containing a path separator. A user's module is imported
    once per process under a name derived from its absolute path (``_emotune_user_space_<stem>_<hash>``),
    so objects it defines unpickle in any process that called ``get`` with the same path first.

    Raises:
        SpaceError: An unknown name (the message lists the valid ones), a missing or unimportable file,
            or a module missing ``NAME``/``suggest``/``build`` or declaring invalid values.
    """
    text = os.fspath(name_or_path)
    if text.endswith(".py") or os.sep in text or "/" in text:
        return _load_file(Path(text))
    valid = names()
    if text not in valid:
        raise SpaceError(
            f"unknown space {text!r}; valid spaces: {', '.join(valid)} (or a path to a .py file)"
        )
    try:
        module = importlib.import_module(f"{_PACKAGE}.{text}")
    except ImportError as exc:  # an optional dependency (torch) missing from this installation
        raise SpaceError(f"spaces/{text}.py: cannot import: {type(exc).__name__}: {exc}") from exc
    _check(module, f"spaces/{text}.py", expected_name=text)
    return module


def accepts(space: ModuleType) -> tuple[str, ...]:
    """The feature sets a space can consume: its ``ACCEPTS``, else only its ``FEATURES``."""
    features = getattr(space, "FEATURES", DEFAULT_FEATURES)
    return tuple(getattr(space, "ACCEPTS", (features,)))


def reads_ssl(space: ModuleType) -> bool:
    """Whether a space reads the ``ssl`` set besides its ``ACCEPTS``: every space that reads ``functionals``
    does, one layer at a time (the view its trials choose, :mod:`emotune.spaces._ssl_view`). ``ssl``
    needs a model (``--ssl-model``), so ``--features all`` leaves it out."""
    return "ssl" in accepts(space) or "functionals" in accepts(space)


def describe(space: ModuleType | str | os.PathLike[str]) -> dict[str, Any]:
    """``{"name", "features", "resources", "max_steps", "summary"}`` of a space, defaults filled in.

    Args:
        space: A module from :func:`get`, a registered name, or a path. A registered name is described
            from its source without importing it (unless a value is not a literal), which keeps listing
            every space fast.
    """
    if isinstance(space, ModuleType):
        doc = (space.__doc__ or "").strip()
        return _description({key: getattr(space, key, None) for key in _DECLARED}, doc)
    text = os.fspath(space)
    if text in names():
        static = _static_declarations(_DIR / f"{text}.py")
        if static is not None:
            return static
    return describe(get(text))


def _description(values: dict[str, Any], doc: str) -> dict[str, Any]:
    resources = values["RESOURCES"]
    features = values["FEATURES"] if values["FEATURES"] is not None else DEFAULT_FEATURES
    return {
        "name": values["NAME"],
        "features": features,
        "accepts": list(values["ACCEPTS"]) if values["ACCEPTS"] is not None else [features],
        "resources": dict(resources) if resources is not None else dict(DEFAULT_RESOURCES),
        "max_steps": values["MAX_STEPS"] if values["MAX_STEPS"] is not None else DEFAULT_MAX_STEPS,
        "summary": doc.splitlines()[0] if doc else "",
    }


def _static_declarations(path: Path) -> dict[str, Any] | None:
    """The module's declarations read from its source, or None when only importing it can tell.

    That is when a declaration is not a top-level ``NAME = <literal>``: computed, assigned inside a
    block, or possibly served by a module ``__getattr__`` (PEP 562) when absent.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    values: dict[str, Any] = dict.fromkeys(_DECLARED)
    literal: set[ast.AST] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in values:
            try:
                values[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError):
                return None
            literal.add(target)
    for any_node in ast.walk(tree):
        stored = (
            isinstance(any_node, ast.Name) and any_node.id in values and isinstance(any_node.ctx, ast.Store)
        )
        if stored and any_node not in literal:
            return None  # assigned elsewhere too (in an if, a try, a function's global)
    has_getattr = any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body)
    if values["NAME"] is None or (has_getattr and None in values.values()):
        return None
    return _description(values, ast.get_docstring(tree) or "")


def _load_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        hint = f" (the registered space is named {path.stem!r}, without .py)" if path.stem in names() else ""
        raise SpaceError(f"{path}: no such space file{hint}")
    if path.suffix != ".py":
        raise SpaceError(f"{path}: a space module must be a .py file")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    return load_file_as(path, f"{USER_MODULE_PREFIX}{stem}_{digest}")


def load_file_as(path: Path, module_name: str) -> ModuleType:
    """Import the space file ``path`` as ``module_name`` (once per process) and check the contract.

    A model directory imports its own copy of a member's space this way, under the name the member's
    classes were pickled with.
    """
    module = sys.modules.get(module_name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpaceError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before exec: dataclasses and pickle look the module up by name
    try:
        spec.loader.exec_module(module)
        _check(module, str(path))
    except SpaceError:
        del sys.modules[module_name]
        raise
    except Exception as exc:
        del sys.modules[module_name]
        reason = " ".join(str(exc).split()) or "no message"
        raise SpaceError(f"{path}: cannot import space module: {type(exc).__name__}: {reason}") from exc
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _check(module: ModuleType, origin: str, *, expected_name: str | None = None) -> None:
    """Raise SpaceError naming ``origin`` and what is wrong when ``module`` breaks the space contract."""
    missing = [attr for attr in _REQUIRED if not hasattr(module, attr)]
    if missing:
        raise SpaceError(f"{origin}: not a space module: missing {', '.join(missing)}")
    problems = []
    name = module.NAME
    if not isinstance(name, str) or not name:
        problems.append(f"NAME must be a non-empty string, got {name!r}")
    elif expected_name is not None and name != expected_name:
        problems.append(f"NAME is {name!r} but the file is {expected_name}.py")
    for attr in ("suggest", "build", "fit", "pruner"):
        if hasattr(module, attr) and not callable(getattr(module, attr)):
            problems.append(f"{attr} must be a function")
    features = getattr(module, "FEATURES", DEFAULT_FEATURES)
    if features not in FEATURE_SETS:
        problems.append(f"FEATURES {features!r} is not a feature set ({', '.join(FEATURE_SETS)})")
    accepts = getattr(module, "ACCEPTS", (features,))
    if not (isinstance(accepts, tuple | list) and accepts and all(a in FEATURE_SETS for a in accepts)):
        problems.append(f"ACCEPTS must be a non-empty tuple of feature sets, got {accepts!r}")
    elif features not in accepts:
        problems.append(f"ACCEPTS {tuple(accepts)!r} must include FEATURES {features!r}")
    resources = getattr(module, "RESOURCES", DEFAULT_RESOURCES)
    if not (
        isinstance(resources, dict)
        and all(isinstance(k, str) and isinstance(v, int | float) and v >= 0 for k, v in resources.items())
        and resources.get("num_cpus", 0) > 0
    ):
        problems.append(f"RESOURCES must map resource names to amounts with num_cpus > 0, got {resources!r}")
    max_steps = getattr(module, "MAX_STEPS", DEFAULT_MAX_STEPS)
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        problems.append(f"MAX_STEPS must be an integer >= 1, got {max_steps!r}")
    if problems:
        raise SpaceError(f"{origin}: {'; '.join(problems)}")
