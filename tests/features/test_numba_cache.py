"""numba's shared JIT cache under concurrent first compilation (issue 17, defect 13).

numba saves a cache entry by reading a function's index, adding to it and writing it back, without a
lock; processes compiling the same function at once could map a signature to another one's machine
code, and every later process died with SIGSEGV. guard_numba_cache() serialises those updates.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from emotune.features._ray import guard_numba_cache

PROCESSES = 8
DTYPES = ("int8", "int16", "int32", "int64", "float32", "float64", "complex64", "complex128")

_KERNEL = """
import numba

@numba.njit(cache=True)
def kernel(x):
    out = x.copy()
    for i in range(x.shape[0]):
        out[i] = x[i] * 3 + 1
    return out
"""

_COMPILE = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
if sys.argv[3] == "guard":
    from emotune.features._ray import guard_numba_cache
    guard_numba_cache()
import numpy as np
from numba.core import caching
# A slow disk: widen the window between reading an index and writing it back, as a busy NFS or a
# loaded machine does, so that an unserialised save loses the race in every run, not one in many.
import random
_save_index, _save_data = caching.IndexDataCacheFile._save_index, caching.IndexDataCacheFile._save_data
def slow_save_index(self, overloads):
    time.sleep(0.3)
    return _save_index(self, overloads)
def slow_save_data(self, name, data):
    time.sleep(random.random() * 0.6)
    return _save_data(self, name, data)
caching.IndexDataCacheFile._save_index = slow_save_index
caching.IndexDataCacheFile._save_data = slow_save_data
from kernel_mod import kernel
dtypes = sys.argv[4].split(",")
rank = int(sys.argv[5])
while time.time() < float(sys.argv[2]):  # every process starts compiling at the same moment
    time.sleep(0.001)
for dtype in dtypes[rank:] + dtypes[:rank]:  # each in another order: different keys race
    x = np.arange(5).astype(dtype)
    assert (kernel(x) == x * 3 + 1).all()
"""

_VERIFY = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from kernel_mod import kernel
for dtype in sys.argv[2].split(","):
    x = np.arange(7).astype(dtype)
    assert (kernel(x) == x * 3 + 1).all(), dtype
print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
"""


def test_guard_wraps_numbas_index_file_once():
    from numba.core import caching

    guard_numba_cache()
    save = caching.IndexDataCacheFile.save
    guard_numba_cache()  # idempotent: never wrapped twice
    assert caching.IndexDataCacheFile.save is save
    assert save.__name__ == "locked_save"


def test_many_processes_compiling_into_one_empty_cache(tmp_path: Path):
    module = tmp_path / "src"
    module.mkdir()
    (module / "kernel_mod.py").write_text(textwrap.dedent(_KERNEL))
    cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    start = time.time() + 8.0  # after every interpreter has imported numba
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _COMPILE, str(module), str(start), "guard", ",".join(DTYPES), str(rank)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(PROCESSES)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    # One index for the function, one entry per signature, each with its own data file.
    (index,) = list(cache.rglob("*.nbi"))
    with open(index, "rb") as f:
        pickle.load(f)  # numba's version
        _stamp, overloads = pickle.loads(f.read())
    assert len(overloads) == len(DTYPES)
    assert len(set(overloads.values())) == len(DTYPES)
    # A fresh process loads every signature from the cache (no compilation) and gets right answers.
    verify = subprocess.run(
        [sys.executable, "-c", _VERIFY, str(module), ",".join(DTYPES)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 0, verify.stderr  # a wrong data file would crash (SIGSEGV) or miscompute
    hits, misses = map(int, verify.stdout.split())
    assert (hits, misses) == (len(DTYPES), 0)
