"""Keeping a study's Ray workers alive across lost processes and lost nodes.

A worker whose process dies is restarted by Ray on its node (``max_restarts``) and its loop re-run.
A worker whose node dies (the node's raylet killed, the machine gone) is restarted by Ray on the
remaining nodes when they have room; when Ray gives up on it (its restarts spent, or its actor
declared dead), :class:`WorkerWatch` starts a new worker in its place. Either way the trial it was
running stops beating and is failed by the next worker that asks for a trial, then retried with the
same parameters (``RetryHeartbeatStaleTrialCallback``), so the study still ends with exactly N
finished trials and nothing RUNNING.

A worker that cannot be placed (the remaining nodes are full) waits; once the study holds its N
finished trials, such a worker is given up. The search says in one line per event what happened.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

from emotune.search import _storage as st
from emotune.search._study import StudyError

# How often the driver looks at the cluster's nodes and the study's finished trials.
POLL_S = 2.0
# A worker that does not answer a ping for this long, once the study is finished, is given up.
UNPLACED_S = 10.0
# How long a lost worker's node has to be declared dead before the worker is reported on its own.
NODE_VERDICT_S = 60.0


class WorkerWatch:
    """Watches the workers of one ``run``: reports lost nodes, replaces dead workers, drops unplaced ones."""

    def __init__(self, actors: list[Any], *, n_trials: int, url: str, name: str) -> None:
        import ray

        self.actors = actors
        self.n_trials = n_trials
        self.url, self.name = url, name
        self.where = dict(enumerate(ray.get([a.node.remote() for a in actors])))  # i -> node id
        self.names: dict[str, str] = {}  # node id -> node name
        self.alive = self._alive_nodes()
        self.reported: set[str] = set()
        self.replaced = 0
        self.index = len(actors)
        self.last = time.time()
        self.pings: dict[int, tuple[Any, float]] = {}
        self.eng: Any = None
        self.unexplained: dict[int, tuple[str | None, str, float]] = {}  # i -> (node, why, since)
        self.closing = False

    @staticmethod
    def _nodes() -> list[dict[str, Any]]:
        import ray

        return list(ray.nodes())

    def _alive_nodes(self) -> set[str]:
        nodes = self._nodes()
        self.names = {n["NodeID"]: str(n.get("NodeName") or n.get("NodeManagerAddress")) for n in nodes}
        return {n["NodeID"] for n in nodes if n.get("Alive")}

    def _check_nodes(self) -> None:
        alive = self._alive_nodes()
        for node in sorted(self.alive - alive):
            mine = sum(1 for n in self.where.values() if n == node)
            mine += sum(1 for n, _, _ in self.unexplained.values() if n == node)
            if mine and node not in self.reported:
                self.reported.add(node)
                print(
                    f"emotune: lost Ray node {self.names.get(node, node)!r} with {mine} worker(s): they are "
                    "restarted on the remaining nodes, and the trials they were running fail and are "
                    "retried with the same parameters",
                    file=sys.stderr,
                    flush=True,
                )
        self.alive = alive
        # A lost worker whose node is still alive after a while: its own process died.
        for i, (lost_on, why, since) in list(self.unexplained.items()):
            if lost_on in self.reported:
                del self.unexplained[i]
            elif self.closing or time.time() - since > NODE_VERDICT_S:
                del self.unexplained[i]
                print(
                    f"emotune: worker {i} was lost ({why}): a new one took its place, and its running "
                    "trial fails and is retried with the same parameters",
                    file=sys.stderr,
                    flush=True,
                )

    def next_index(self) -> int:
        """A worker index never used in this run (a fresh sampler seed for a replacement)."""
        self.index += 1
        return self.index - 1

    def lost(self, i: int, exc: BaseException) -> None:
        """Worker ``i`` is dead for good (or unreachable: it is killed to be sure); it is reported
        with its node when that node turns out lost, else on its own."""
        import ray

        self.replaced += 1
        if self.replaced > 3 * max(1, len(self.actors)):
            raise StudyError(f"workers keep dying ({self.replaced} replaced); last: {_first_line(exc)}")
        ray.kill(self.actors[i], no_restart=True)
        self.unexplained[i] = (self.where.pop(i, None), type(exc).__name__, time.time())
        self._check_nodes()

    def started(self, i: int, actor: Any) -> None:
        """Worker ``i`` is now ``actor`` (not placed yet: its node is unknown)."""
        self.pings.pop(i, None)

    def poll(self, pending: dict[Any, int]) -> None:
        """Every few seconds: report lost nodes; once the study is finished, drop unplaced workers."""
        import ray

        if time.time() - self.last < POLL_S:
            return
        self.last = time.time()
        self._check_nodes()
        if not pending or not self._finished():
            return
        now = time.time()
        for ref, i in list(pending.items()):
            ping, since = self.pings.get(i) or (self.actors[i].node.remote(), now)
            self.pings[i] = (ping, since)
            ready, _ = ray.wait([ping], timeout=0)
            if ready:
                self.pings.pop(i)
            elif now - since > UNPLACED_S:
                # Not placed (or not restarted) while the study is complete: nothing is left for it.
                ray.kill(self.actors[i], no_restart=True)
                del pending[ref]

    def _finished(self) -> bool:
        if self.eng is None:
            self.eng = st.engine(self.url)
        try:
            import sqlalchemy

            q = sqlalchemy.text(
                "SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name = :n AND t.state IN ('COMPLETE', 'PRUNED')"
            )
            with self.eng.connect() as c:
                return int(c.execute(q, {"n": self.name}).scalar_one()) >= self.n_trials
        except Exception:
            return False  # the storage may be restarting; ask again later

    def close(self) -> None:
        """Settle what is still unexplained (waiting for Ray's verdict on nodes), then let go."""
        with contextlib.suppress(Exception):
            while self.unexplained and any(
                time.time() - since < NODE_VERDICT_S for _, _, since in self.unexplained.values()
            ):
                self._check_nodes()
                time.sleep(1.0)
            self.closing = True
            self._check_nodes()
        if self.eng is not None:
            self.eng.dispose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
