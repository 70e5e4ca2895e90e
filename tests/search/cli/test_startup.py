"""The command line starts fast: building its parser loads no model library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# What a parser must not need: each costs ~0.3-1 s of start-up on every command, including
# a warm `features build` and `--help`.
HEAVY = ("sklearn", "torch", "xgboost", "lightgbm", "librosa", "ray")

PROBE = """
import json, sys
from emotune.search.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))))
"""


@pytest.mark.parametrize("command", ["features", "ensemble", "evaluate", "predict", "search"])
def test_help_of_every_command_loads_no_model_library(command: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=[command, "--help"], heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"usage: emotune {command}" in proc.stdout
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [], f"`emotune {command} --help` imports them"


def test_the_voting_package_loads_its_modules_on_first_use() -> None:
    code = (
        "import sys, emotune.search.vote as v; a = 'sklearn' in sys.modules; "
        "v.StackedVoter; print(a, 'sklearn' in sys.modules, v.VOTERS)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["False", "True", "('auto',", "'greedy',", "'stacked')"], proc.stderr
