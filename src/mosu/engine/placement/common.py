"""Small pieces every scoring policy shares: tie-breaking, GPU choice on a node, and the
select step of a policy that scores all candidates at once."""

from __future__ import annotations

import random

import numpy as np

from mosu.core.models import GPU_MILLI, Shape
from mosu.engine.placement.base import Candidates, StateOnly, choose_gpus
from mosu.engine.state import ClusterState


class TieBreak:
    """A fixed random priority of nodes, drawn once from ``rng``: a tie in score goes to
    the node ranked first. The FGD paper's simulator does the same (it prefixes node
    names with a random permutation and breaks ties by name), and a fixed order keeps
    tied decisions consolidated on the same nodes instead of scattering them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._rank = np.zeros(0, dtype=np.int64)

    def rank(self, n: int) -> np.ndarray:
        if len(self._rank) != n:
            order = list(range(n))
            self.rng.shuffle(order)
            self._rank = np.array(order, dtype=np.int64)
        return self._rank


def pick_max(scores: np.ndarray, cand: np.ndarray, ties: TieBreak, n_nodes: int) -> int:
    """The candidate with the highest score, ties to the best-ranked node."""
    best = np.flatnonzero(scores == scores.max())
    if len(best) == 1:
        return int(cand[best[0]])
    tied = cand[best]
    return int(tied[np.argmin(ties.rank(n_nodes)[tied])])


def random_gpus(state: ClusterState, i: int, shape: Shape, rng: random.Random) -> tuple[int, ...]:
    """Lowest-index free GPUs for whole requests; a uniformly drawn GPU with room for a share."""
    free = state.gpu_free[i]
    if shape.gpus == 0:
        return ()
    if shape.gpu_milli == GPU_MILLI:
        return tuple([g for g, f in enumerate(free) if f == GPU_MILLI][: shape.gpus])
    room = [g for g, f in enumerate(free) if f >= shape.gpu_milli]
    return (room[rng.randrange(len(room))],)


class ScoringPolicy(StateOnly):
    """A policy that scores every candidate node at once: the highest score wins, a tie
    goes to the node ranked first in a fixed random order, and the node's tightest GPUs
    are taken. Subclasses say only how a node scores. The tie order is drawn once, so
    the answers depend on the state alone (``StateOnly``)."""

    name = "scoring"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ties = TieBreak(rng)

    def scores(self, state: ClusterState, shape: Shape, cand: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def select(
        self, state: ClusterState, shape: Shape, candidates: Candidates
    ) -> tuple[int, tuple[int, ...]] | None:
        cand = np.asarray(candidates, dtype=np.int64)
        if not len(cand):
            return None
        i = pick_max(self.scores(state, shape, cand), cand, self.ties, len(state.nodes))
        return i, choose_gpus(state, i, shape)
