"""Reclaim's victim search without a walk over every running job.

``find_victims_by_node`` (``engine/preemption.py``) defines the plan: for each replica
the node whose cheapest victims, taken in candidate order, free enough whole GPUs,
the node whose plan has the cheapest dearest victim winning (then the fewest victims,
then the lowest index). Built from a list of every candidate, it costs a pass over all
running jobs and every node per search, and reclaim searches once per job it starts.

``VictimIndex`` returns the same plan while looking at few nodes. A node's plan can
be no cheaper than its *bound*: the least cost ``c`` such that the victims on it of
tenants that borrow, costing at most ``c``, hold enough whole GPUs. Bounds depend on
the node alone (its free GPUs and the jobs on it), so each is kept in a heap per
replica size and recomputed only for nodes whose ``ClusterState.cols.node_version``
moved or whose borrowers stopped borrowing (a bound over more victims than the
candidates stays a bound). A search evaluates nodes by rising bound, exactly as the
definition does, and stops at the first bound above the best plan found.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

import numpy as np

from mosu.core.models import GPU_MILLI, Job, Placement
from mosu.engine.cycle.victims import victims_among
from mosu.engine.cycle.work import Work
from mosu.engine.preemption import (
    Victim,
    find_victims,
    fits_without,
    free_nodes,
    on_nodes,
    take_node_plan,
)

MAX_SIZES = 16
"""Nodes of at most this many GPUs get the heaps of every replica size built at once."""

_Entry = tuple[int, int, int]
"""(bound, node index, the node's generation when the bound was computed)."""


class VictimIndex:
    """The cycle's preemptible jobs by node, with each node's bound per replica size.

    Built from the victims of the tenants that borrow (``victims_among``; costs are
    fixed for the cycle, and a subset keeps their order); evicted jobs are
    skipped as they leave ``Work.running``. The tenants that borrow may only become
    fewer between searches (``covers``), as they do while reclaim runs: it starts jobs
    within guarantees and evicts borrowed ones.
    """

    def __init__(self, work: Work, borrowing: frozenset[str]) -> None:
        self.work = work
        state = work.state
        # Only the tenants that borrow lend victims to reclaim: often few of many.
        victims = victims_among(work, borrowing)
        # Dense ranks of the costs (less the job id the costs end with): the plan's key
        # compares those, and ``victims`` is in cost order.
        self.rank: dict[str, int] = {}
        self.pos: dict[str, int] = {}
        self.on_node: list[list[tuple[Victim, int]]] = [[] for _ in state.nodes]
        self.nodes_of: dict[str, set[int]] = {}
        previous: tuple[float | str, ...] | None = None
        rank = -1
        for k, v in enumerate(victims):
            cost = v.cost[:-1]
            if cost != previous:
                rank += 1
                previous = cost
            self.rank[v.job_id] = rank
            self.pos[v.job_id] = k
            for i, gpus in v.on_nodes or on_nodes(state, v.placement):
                self.on_node[i].append((v, gpus))
                self.nodes_of.setdefault(v.tenant, set()).add(i)
        self.ranks = rank + 1
        self.borrowing = borrowing
        self.seen = state.cols.node_version.copy()
        self.generation = [0] * len(state.nodes)
        self.heaps: dict[tuple[str | None, int], list[_Entry]] = {}
        largest = max((node.gpus for node in state.nodes), default=0)
        self.largest = largest if largest <= MAX_SIZES else 0
        """Replica sizes whose heaps are built together (0: each on its own)."""

    # -- bounds --------------------------------------------------------------------

    def _combined(self, v: Victim, home: str | None) -> int:
        """A victim's cost as one integer: its rank, after its cohort's distance."""
        rank = self.rank[v.job_id]
        book = self.work.cohorts
        if home is None or book is None:
            return rank
        return rank + self.ranks * (book.cohort(v.tenant) != home)

    def _held(self, i: int, home: str | None) -> list[tuple[int, int]]:
        """(combined cost, GPUs) of the victims on node ``i`` that run and borrow,
        cheapest first."""
        running = self.work.running
        borrowing = self.borrowing
        if home is None or self.work.cohorts is None:
            rank = self.rank
            # ``on_node`` lists each node's victims in cost order: no sort needed.
            return [
                (rank[v.job_id], gpus)
                for v, gpus in self.on_node[i]
                if v.tenant in borrowing and v.job_id in running
            ]
        held = [
            (self._combined(v, home), gpus)
            for v, gpus in self.on_node[i]
            if v.tenant in borrowing and v.job_id in running
        ]
        held.sort()
        return held

    @staticmethod
    def _least(held: list[tuple[int, int]], need: int) -> int | None:
        """The least cost at which the cheapest of ``held`` free ``need`` GPUs."""
        if need <= 0:
            return -1
        freed = 0
        for cost, gpus in held:
            freed += gpus
            if freed >= need:
                return cost
        return None

    def _heap(self, home: str | None, per: int) -> list[_Entry]:
        heap = self.heaps.get((home, per))
        if heap is None:
            # One pass over the nodes' victims gives the bounds of every replica size up
            # to the largest node (searches ask for most of them): a heap each.
            most = self.largest
            sizes = [p for p in range(1, most + 1) if (home, p) not in self.heaps]
            if per not in sizes:
                sizes = [per]
            state = self.work.state
            generation = self.generation
            built: list[list[_Entry]] = [[] for _ in sizes]
            for i in range(len(self.on_node)):
                if not self.on_node[i] or not state.schedulable[i]:
                    continue
                held = self._held(i, home)
                if not held:
                    continue
                gpus, free = state.nodes[i].gpus, state.full_free[i]
                for p, entries in zip(sizes, built, strict=True):
                    if gpus >= p:
                        bound = self._least(held, p - free)
                        if bound is not None:
                            entries.append((bound, i, generation[i]))
            for p, entries in zip(sizes, built, strict=True):
                heapq.heapify(entries)
                self.heaps[(home, p)] = entries
            heap = self.heaps[(home, per)]
        return heap

    def covers(self, borrowing: frozenset[str]) -> bool:
        """Whether the bounds hold for candidates among ``borrowing``'s victims."""
        return borrowing <= self.borrowing

    def _refresh(self, borrowing: frozenset[str]) -> None:
        """Recompute the bounds of nodes that changed or lost borrowers."""
        dirty: set[int] = set()
        for tenant in self.borrowing - borrowing:
            dirty |= self.nodes_of.get(tenant, set())
        self.borrowing = borrowing
        versions = self.work.state.cols.node_version
        changed = np.flatnonzero(versions != self.seen)
        if len(changed):
            self.seen[changed] = versions[changed]
            dirty.update(changed.tolist())
        if not dirty:
            return
        # One pass over a node's victims per cohort, for the bounds of every size.
        by_home: dict[str | None, list[tuple[int, list[_Entry]]]] = {}
        for (home, per), heap in self.heaps.items():
            by_home.setdefault(home, []).append((per, heap))
        state = self.work.state
        generation = self.generation
        for i in dirty:
            generation[i] += 1
            if not self.on_node[i] or not state.schedulable[i]:
                continue
            gpus, free = state.nodes[i].gpus, state.full_free[i]
            for home, sizes in by_home.items():
                held = self._held(i, home)
                if not held:
                    continue
                for per, heap in sizes:
                    if gpus >= per:
                        bound = self._least(held, per - free)
                        if bound is not None:
                            heapq.heappush(heap, (bound, i, generation[i]))

    # -- the search ----------------------------------------------------------------

    def find(
        self,
        job: Job,
        *,
        borrowing: frozenset[str],
        borrowed_on: Callable[[Victim], int],
        home: str | None,
        fits: Callable[[], Placement | None],
        may_take: Callable[[Victim, Sequence[Victim]], bool],
        need_milli: int,
        free_milli: int,
        candidates: Callable[[], list[Victim]],
    ) -> tuple[list[Victim], Placement] | None:
        """``find_victims_by_node(state, job, candidates(), fits, ...)``, where the
        candidates are the running victims of the tenants in ``borrowing`` (which the
        index ``covers``) other than ``job``'s, in the order (``borrowed_on(v) <
        v.gpu_milli``, cost), the cost led by whether the victim's cohort is other than
        ``home`` when ``home`` is given."""
        state = self.work.state
        shape = job.shape
        per = shape.gpus
        if per == 0 or shape.gpu_milli != GPU_MILLI:
            return find_victims(
                state,
                candidates(),
                fits,
                may_take=may_take,
                need_milli=need_milli,
                free_milli=free_milli,
            )
        if free_milli >= need_milli:
            placement = fits()
            if placement is not None:
                return [], placement
        self._refresh(borrowing)
        lenders = borrowing - {job.tenant}
        running = self.work.running
        pos = self.pos
        taken: list[Victim] = []
        taken_ids: set[str] = set()
        claimed: dict[int, int] = {}
        free = free_nodes(state, job) if job.replicas > 1 else []
        free_set = set(free)

        def plan_on(i: int) -> tuple[int, list[Victim], int] | None:
            """The definition's plan on node ``i``: (its dearest victim's combined cost,
            the victims, GPUs free after), or None if the node is no candidate."""
            node = state.nodes[i]
            if not state.schedulable[i] or node.gpus < per or not job.allows(node.gpu_type):
                return None
            here = [
                (v, gpus)
                for v, gpus in self.on_node[i]
                if v.tenant in lenders and v.job_id in running
            ]
            if not here and i not in free_set:
                return None  # no candidate on it: the definition never looks at it
            if home is None:
                here.sort(key=lambda vg: (borrowed_on(vg[0]) < vg[0].gpu_milli, pos[vg[0].job_id]))
            else:
                here.sort(
                    key=lambda vg: (
                        borrowed_on(vg[0]) < vg[0].gpu_milli,
                        self._combined(vg[0], home) >= self.ranks,
                        pos[vg[0].job_id],
                    )
                )
            have = state.full_free[i] - claimed.get(i, 0)
            plan: list[Victim] = []
            for v, gpus in here:
                if have >= per:
                    break
                if v.job_id in taken_ids:
                    continue
                if not may_take(v, [*taken, *plan]):
                    continue
                plan.append(v)
                have += gpus
            if have < per:
                return None
            dearest = max((self._combined(v, home) for v in plan), default=-1)
            return dearest, plan, have

        for _ in range(job.replicas):
            # (dearest, victims, node): the definition's key is (dearest victim's cost,
            # victim count), ties to the lowest node index.
            best: tuple[tuple[int, int, int], list[Victim]] | None = None

            def consider(i: int) -> bool:
                """Whether node ``i`` has a plan; the best one so far is kept."""
                nonlocal best
                found = plan_on(i)
                if found is None:
                    return False
                dearest, plan, _ = found
                key = (dearest, len(plan), i)
                if best is None or key < best[0]:
                    best = (key, plan)
                return True

            # Nodes this search already took from or chose have other free GPUs than
            # their bounds assumed: evaluated directly.
            for i in sorted(claimed):
                consider(i)
            # A free node's plan takes no victim, the cheapest there is: the first one
            # with room beats every other free node.
            for i in free:
                if i not in claimed and consider(i):
                    break
            heap = self._heap(home, per)
            popped: list[_Entry] = []
            generation = self.generation
            while heap:
                bound, i, gen = heap[0]
                if gen != generation[i]:
                    heapq.heappop(heap)
                    continue
                if best is not None and bound > best[0][0]:
                    break
                popped.append(heapq.heappop(heap))
                if i not in claimed:
                    consider(i)
            for entry in popped:
                heapq.heappush(heap, entry)
            if best is None:
                return None
            (_, _, i), plan = best
            take_node_plan(state, plan, i, per, taken, taken_ids, claimed)
        placement = fits_without(state, taken, fits)
        if placement is None:
            return find_victims(
                state,
                candidates(),
                fits,
                may_take=may_take,
                need_milli=need_milli,
                free_milli=free_milli,
            )
        return taken, placement
