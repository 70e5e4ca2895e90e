"""The ``ssl`` set's part of the feature build: a pool of Ray actors, each holding the encoder once.

The cache's build (:mod:`emotune.features._cache`) hands the files that miss an ``ssl`` entry here
(:func:`split_ssl`, :func:`compute_ssl`); the other sets of the same build run as ordinary Ray tasks.

Invariants:

- The driver finds the model and checks its weights against the params before Ray starts (one line
  when they are missing or other ones); each actor loads it once (:func:`~emotune.features._ssl.load_encoder`)
  and checks it again on its own machine.
- One actor per CPU of the cluster at most, each declaring one CPU and running torch on one thread,
  so actors never oversubscribe the cores; on a cluster with GPUs each also takes its share of them
  (GPUs / CPUs) and runs there.
- Files go to the actors in small batches (largest files first), at most two calls in flight per
  actor; each file is encoded alone (see :mod:`emotune.features._ssl`), so results do not depend on
  the batching. Results are committed per batch, as the other sets' are.
- On a one-node cluster actors read the files by path; otherwise the driver ships their bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from typing import TYPE_CHECKING, Any

from emotune.features._errors import AudioError, EmotuneError, FeatureError

if TYPE_CHECKING:
    from emotune.features._cache import _Build, _Job

__all__ = ["compute_ssl", "split_ssl"]

_CALLS_PER_ACTOR = 2  # calls in flight per actor: the next batch is ready when one finishes
_BATCH_MAX = 8  # files per call at most


def split_ssl(plist: list[dict[str, Any]], jobs: list[_Job]) -> tuple[list[_Job], list[_Job]]:
    """Jobs for the ordinary tasks (every set but ``ssl``) and for the encoder pool (``ssl`` only)."""
    encoded = {i for i, p in enumerate(plist) if p["set"] == "ssl"}
    if not encoded:
        return jobs, []
    plain: list[_Job] = []
    ssl: list[_Job] = []
    for job in jobs:
        others = tuple(i for i in job.sets if i not in encoded)
        mine = tuple(i for i in job.sets if i in encoded)
        if others:
            plain.append(dataclasses.replace(job, sets=others))
        if mine:
            ssl.append(dataclasses.replace(job, sets=mine))
    return plain, ssl


def compute_ssl(builder: _Build, jobs: list[_Job]) -> None:
    """Encode ``jobs`` with a pool of actors and commit the results through ``builder``.

    Raises:
        FeatureError: several ``ssl`` params in one build, or the model is missing or other weights.
    """
    from emotune.features._ssl import checked_model_dir

    indices = sorted({i for job in jobs for i in job.sets})
    if len(indices) != 1:
        raise FeatureError("one build encodes with one ssl model: build each model's set separately")
    params = builder.plist[indices[0]]
    folder = checked_model_dir(params, builder.ssl_model)
    import ray

    from emotune.features._cache import _progress, _read_or_none
    from emotune.features._ray import is_single_node

    t = time.perf_counter()  # Ray is up: _Build._compute started it
    resources = ray.cluster_resources()
    cpus = max(int(resources.get("CPU", 1)), 1)
    gpus = float(resources.get("GPU", 0.0))
    share = min(1.0, gpus / cpus) if gpus else 0.0
    n_actors = max(1, min(cpus, len(jobs)))
    size = max(1, min(_BATCH_MAX, math.ceil(len(jobs) / (n_actors * 4))))
    ordered = sorted(jobs, key=lambda j: -j.states[0].size)
    batches = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    ship_bytes = not is_single_node()
    actor_class: Any = ray.remote(num_cpus=1, num_gpus=share)(_EncoderActor)
    actors = [actor_class.remote(str(folder), params, 1) for _ in range(n_actors)]
    bar = _progress(len(jobs), builder.progress)
    pending: dict[Any, tuple[Any, list[_Job]]] = {}
    queue = list(reversed(batches))

    def submit(actor: Any) -> None:
        batch = queue.pop()
        items = [(job.path, _read_or_none(job.path) if ship_bytes else None) for job in batch]
        pending[actor.run.remote(items)] = (actor, batch)

    try:
        for actor in actors:
            for _ in range(_CALLS_PER_ACTOR):
                if queue:
                    submit(actor)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                actor, batch = pending.pop(ref)
                results, cpu, node, rss_mib = _get(ref)
                peak = max(builder.timings.get("worker_peak_rss_mib", 0.0), rss_mib)
                builder.timings["worker_peak_rss_mib"] = peak  # not seconds: the largest actor's peak memory
                builder._commit(batch, results)
                builder.nodes[node] = builder.nodes.get(node, 0) + len(batch)
                builder.timings["worker_cpu"] = builder.timings.get("worker_cpu", 0.0) + cpu
                bar.update(len(batch))
                if queue:
                    submit(actor)
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
    builder.timings["compute_ssl"] = time.perf_counter() - t


def _get(ref: Any) -> Any:
    """``ray.get``; an emotune error raised in an actor (its constructor included) comes back as itself."""
    import ray

    try:
        return ray.get(ref)
    except EmotuneError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, EmotuneError) else exc) from None
    except ray.exceptions.ActorDiedError as exc:
        cause = getattr(getattr(exc, "cause", None), "cause", None)
        if isinstance(cause, EmotuneError):
            raise cause from None
        raise


class _EncoderActor:
    """One worker process of the pool: the encoder loaded once, files encoded one by one."""

    def __init__(self, folder: str, params: dict[str, Any], n_threads: int) -> None:
        import torch

        from emotune.features._ssl import checked_model_dir, load_encoder

        torch.set_num_threads(n_threads)
        self.params, self.n_threads = params, n_threads
        self.folder = str(checked_model_dir(params, folder))
        load_encoder(self.folder, device="cuda" if torch.cuda.is_available() else "cpu")

    def run(self, items: list[tuple[str, bytes | None]]) -> tuple[list[tuple[Any, ...]], float, str, float]:
        """``(path, sha, arrays, reason, duration)`` per file (as the cache's tasks give), CPU seconds, node,
        and this process's peak resident memory so far in MiB."""
        import resource

        from emotune.features._audio import decode_bytes
        from emotune.features._ray import node_name
        from emotune.features._ssl import encode

        started = time.process_time()
        sr = int(self.params["sr"])
        out: list[tuple[Any, ...]] = []
        for path, data in items:
            if data is None:
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError as exc:
                    out.append((path, None, None, f"cannot read ({exc.strerror or exc})", None))
                    continue
            sha = hashlib.sha256(data).hexdigest()
            try:
                y = decode_bytes(data, sr=sr, path=path)
                array = encode(y, self.params, ssl_model=self.folder, device="auto", n_threads=self.n_threads)
            except AudioError as exc:
                out.append((path, sha, None, exc.reason, None))
                continue
            except FeatureError as exc:
                out.append((path, sha, None, str(exc), None))
                continue
            entry = (array.dtype.str, ",".join(map(str, array.shape)), array.tobytes())
            out.append((path, sha, [entry], None, len(y) / sr))
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return out, time.process_time() - started, node_name(), rss_mib
