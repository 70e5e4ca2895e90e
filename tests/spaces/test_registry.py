"""The space registry: listing, lookup by name or by a user's file, and its one-line errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emotune import spaces
from emotune.features import EmotuneError
from emotune.spaces import SpaceError
from emotune.spaces._registry import _static_declarations

CLASSICAL = ["dtree", "knn", "lgbm", "logreg", "mlp", "rf", "svm", "xgb"]

USER_SPACE = '''
"""My own space: a majority-class baseline."""
from sklearn.dummy import DummyClassifier

NAME = "my_space"
{extra}

def suggest(trial):
    return {{"strategy": trial.suggest_categorical("strategy", ["prior", "uniform"])}}

def build(params, *, seed, n_classes=None):
    return DummyClassifier(strategy=params["strategy"], random_state=seed)
'''


def _write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def test_names_lists_every_module_without_underscore() -> None:
    names = spaces.names()
    assert names == sorted(names)
    assert set(CLASSICAL) <= set(names)
    assert not any(name.startswith("_") for name in names)
    on_disk = {p.stem for p in Path(spaces.__file__).parent.glob("*.py") if not p.stem.startswith("_")}
    assert set(names) == on_disk


@pytest.mark.parametrize("name", CLASSICAL)
def test_get_returns_the_module(name: str) -> None:
    module = spaces.get(name)
    assert name == module.NAME
    assert module.__name__ == f"emotune.spaces.{name}"
    assert spaces.get(name) is module


def test_unknown_name_fails_with_the_valid_names() -> None:
    with pytest.raises(SpaceError) as caught:
        spaces.get("nosuchspace")
    message = str(caught.value)
    assert isinstance(caught.value, EmotuneError)
    assert "\n" not in message
    assert "nosuchspace" in message
    assert all(name in message for name in spaces.names())


def test_user_module_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path / "my_space.py", USER_SPACE.format(extra=""))
    module = spaces.get(str(path))
    assert module.NAME == "my_space"
    assert spaces.get(path) is module, "loaded once per process, by absolute path"
    assert spaces.describe(module) == {
        "name": "my_space",
        "features": "classic",
        "accepts": ["classic"],
        "resources": {"num_cpus": 1},
        "max_steps": 1,
        "summary": "My own space: a majority-class baseline.",
    }
    assert spaces.describe(str(path)) == spaces.describe(module)
    estimator = module.build({"strategy": "prior"}, seed=0).fit([[0.0], [1.0], [2.0]], ["a", "b", "b"])
    assert pickle.loads(pickle.dumps(estimator)).predict([[5.0]]).tolist() == ["b"]


def test_user_module_declarations_are_read(tmp_path: Path) -> None:
    extra = 'FEATURES = "classic_stats"\nRESOURCES = {"num_cpus": 2}\nMAX_STEPS = 3'
    module = spaces.get(_write(tmp_path / "stats_space.py", USER_SPACE.format(extra=extra)))
    described = spaces.describe(module)
    assert (described["features"], described["resources"], described["max_steps"]) == (
        "classic_stats",
        {"num_cpus": 2},
        3,
    )


def test_objects_of_a_user_module_pickle_by_reference(tmp_path: Path) -> None:
    source = USER_SPACE.format(extra="class Marker:\n    pass")
    module = spaces.get(_write(tmp_path / "marked.py", source))
    assert isinstance(pickle.loads(pickle.dumps(module.Marker())), module.Marker)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def suggest(trial):\n    return {}\n", "missing NAME, build"),
        ('NAME = "x"\n', "missing suggest, build"),
        (USER_SPACE.format(extra='FEATURES = "wav2vec"'), "FEATURES 'wav2vec' is not a feature set"),
        (USER_SPACE.format(extra='RESOURCES = {"num_cpus": 0}'), "RESOURCES must map"),
        (USER_SPACE.format(extra="MAX_STEPS = 0"), "MAX_STEPS must be an integer >= 1"),
        (USER_SPACE.format(extra="fit = 3"), "fit must be a function"),
        ("NAME = 'x'\ndef suggest(:\n", "SyntaxError"),
        ("import no_such_package_xyz\n", "ModuleNotFoundError"),
        ("raise RuntimeError('boom\\nsecond line')\n", "RuntimeError: boom second line"),
    ],
    ids=[
        "no-name-build",
        "no-suggest-build",
        "features",
        "resources",
        "max-steps",
        "not-callable",
        "syntax",
        "import",
        "raises",
    ],
)
def test_broken_user_module_fails_in_one_line_naming_the_file(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = _write(tmp_path / "broken.py", source)
    with pytest.raises(SpaceError) as caught:
        spaces.get(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and expected in message
    # A failed import leaves nothing behind: fixing the file and retrying works in the same process.
    _write(path, USER_SPACE.format(extra=""))
    assert spaces.get(str(path)).NAME == "my_space"


def test_missing_file_and_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="no such space file"):
        spaces.get(str(tmp_path / "absent.py"))
    other = _write(tmp_path / "space.txt", USER_SPACE.format(extra=""))
    with pytest.raises(SpaceError, match=r"must be a \.py file"):
        spaces.get(str(other))


def test_listing_imports_no_model_library() -> None:
    """`emotune spaces` describes every space from source: no scikit-learn, XGBoost, LightGBM, torch."""
    code = textwrap.dedent(
        """
        import json, sys, time
        start = time.perf_counter()
        from emotune.spaces import describe, names
        rows = [describe(name) for name in names() if name in sys.argv[1:]]
        heavy = sorted(m for m in ("sklearn", "xgboost", "lightgbm", "torch", "optuna") if m in sys.modules)
        print(json.dumps({"rows": rows, "heavy": heavy, "seconds": time.perf_counter() - start}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *CLASSICAL], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert [row["name"] for row in result["rows"]] == CLASSICAL
    assert result["heavy"] == []


@pytest.mark.parametrize(
    ("declarations", "static"),
    [
        ('NAME = "s"\nMAX_STEPS = 4', True),
        ('NAME = "s"\nRESOURCES: dict = {"num_cpus": 2}', True),
        ('NAME = "s"\nRESOURCES = dict(num_cpus=1)', False),  # computed
        ('NAME = "s"\nif True:\n    MAX_STEPS = 2', False),  # assigned in a block
        ('NAME = "s"\ndef __getattr__(name):\n    raise AttributeError(name)', False),  # PEP 562
        ("MAX_STEPS = 2", False),  # no NAME: only the import can say what is wrong
    ],
)
def test_static_listing_falls_back_to_import_when_source_cannot_tell(
    tmp_path: Path, declarations: str, static: bool
) -> None:
    path = _write(tmp_path / "s.py", f'"""Doc line."""\n{declarations}\n')
    described = _static_declarations(path)
    assert (described is not None) == static
    if static:
        assert described is not None and described["name"] == "s" and described["summary"] == "Doc line."


@pytest.mark.parametrize("name", CLASSICAL)
def test_static_listing_matches_the_module(name: str) -> None:
    assert spaces.describe(name) == spaces.describe(spaces.get(name))


def test_accepts_must_be_feature_sets_that_include_the_default(tmp_path):
    bad = tmp_path / "bad_accepts.py"
    bad.write_text(
        'NAME = "bad_accepts"\nFEATURES = "classic"\nACCEPTS = ("classic_stats",)\n'
        "def suggest(trial):\n    return {}\ndef build(params, *, seed, n_classes=None):\n    return None\n"
    )
    with pytest.raises(SpaceError, match=r"ACCEPTS \('classic_stats',\) must include FEATURES 'classic'"):
        spaces.get(bad)
    unknown = tmp_path / "unknown_accepts.py"
    unknown.write_text(
        bad.read_text().replace('("classic_stats",)', '("classic", "mfcc")').replace("bad_", "unknown_")
    )
    with pytest.raises(SpaceError, match="ACCEPTS must be a non-empty tuple of feature sets"):
        spaces.get(unknown)
    assert spaces.describe("svm")["accepts"] == ["functionals", "classic_stats", "classic"]
