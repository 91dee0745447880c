"""Time-faithful trace replay: an event loop around the same engine.

Jobs arrive at their submit times and run for their true durations. The engine
sees only what a real scheduler would: the job, its user estimate or a history
estimate (per the profile), its service so far; true remaining times go in the
snapshot only for profiles that declare ``needs_true_remaining`` (oracles).

A preempted job keeps the work up to its last checkpoint (checkpoints every
``checkpoint_every_s`` of wall time since its start, the job's own if its trace
declares one, else the config's; 0 means continuously), pays
``restart_overhead_s`` when it starts again, and requeues. The engine is called
once per instant at which something happened, and only while jobs wait.

Timed changes (``traces.schema.TimedChange``: a history's quota and node changes)
are applied at their time to what the engine sees from then on: a tenant's quota,
weight or cohort; a node made ready, drained (what runs there goes on) or down (what
runs there is requeued, as the platform requeues it). The metrics' guarantees and
capacity are those in force at the start.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mosu.core.models import GPU_MILLI, Job, Node, NodeState, Placement, RunningJob, Tenant
from mosu.core.reasons import PendingReason, PreemptReason
from mosu.engine.cycle import schedule
from mosu.engine.decisions import CycleResult
from mosu.engine.estimates import HistoryEstimator, StartEstimates
from mosu.engine.profiles import Estimator, SchedulingProfile
from mosu.engine.snapshot import ClusterSnapshot
from mosu.engine.state import ClusterState
from mosu.sim.credits import CreditBook
from mosu.sim.events import EventKind, EventQueue
from mosu.sim.records import JobOutcome, SimLog, UsageSample
from mosu.traces.schema import ChangeKind, TimedChange, TraceJob

DEFAULT_CHECKPOINT_EVERY_S = 1_800.0
DEFAULT_RESTART_OVERHEAD_S = 60.0


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    checkpoint_every_s: float = DEFAULT_CHECKPOINT_EVERY_S
    restart_overhead_s: float = DEFAULT_RESTART_OVERHEAD_S

    def __post_init__(self) -> None:
        if self.checkpoint_every_s < 0 or self.restart_overhead_s < 0:
            raise ValueError("checkpoint_every_s and restart_overhead_s must be >= 0")


@dataclass(slots=True)
class _Progress:
    """The simulator's private record of one job (true remaining work included)."""

    trace: TraceJob
    job: Job
    remaining_s: float
    gpu_type: str
    attained_gpu_s: float = 0.0
    attempt: int = 0
    started_s: float = 0.0
    overhead_s: float = 0.0
    first_start_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0
    lost_gpu_s: float = 0.0
    waiting_guarantee_since: float | None = None
    reclaim_wait_s: float | None = None
    eta_recorded: bool = False
    eta_start_s: float | None = None
    eta_late_s: float | None = None
    eta_plan: tuple[str, str, float] | None = None


@dataclass
class ReplayResult:
    log: SimLog
    decisions: list[str] = field(default_factory=list)
    cycles: int = 0


def replay(
    jobs: Sequence[TraceJob],
    tenants: Sequence[Tenant],
    nodes: Sequence[Node],
    profile: SchedulingProfile,
    config: ReplayConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    credits: CreditBook | None = None,
    changes: Sequence[TimedChange] = (),
) -> ReplayResult:
    """Replay ``jobs`` on ``nodes`` under ``profile``; deterministic for equal inputs.
    ``credits`` charges the runs and applies out-of-credit policies (``sim.credits``);
    ``changes`` are applied at their times (a subject not in ``tenants`` or ``nodes``
    is a ValueError)."""
    run = _Replay(jobs, tenants, nodes, profile, config or ReplayConfig(), progress)
    run.credits = credits
    run.add_changes(changes)
    return run.run()


class _Replay:
    def __init__(
        self,
        jobs: Sequence[TraceJob],
        tenants: Sequence[Tenant],
        nodes: Sequence[Node],
        profile: SchedulingProfile,
        config: ReplayConfig,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.profile = profile
        self.config = config
        self.nodes = tuple(nodes)
        self.tenants = tuple(tenants)
        self.state = ClusterState(self.nodes)
        self.default_type = self.state.gpu_types[0] if self.state.gpu_types else ""
        self.node_type = {n.name: n.gpu_type for n in self.nodes}
        self.events = EventQueue()
        self.jobs: dict[str, _Progress] = {}
        self.order: list[str] = []
        for tj in jobs:
            if tj.id in self.jobs:
                raise ValueError(f"duplicate job id {tj.id!r}")
            if tj.duration_s is None:
                raise ValueError(f"job {tj.id!r} has no duration; a replay needs one")
            gpu_type = tj.gpu_types[0] if tj.gpu_types else self.default_type
            ckpt = tj.checkpoint_every_s
            if ckpt is None:
                ckpt = config.checkpoint_every_s
            self.jobs[tj.id] = _Progress(
                tj, tj.to_job(checkpoint_every_s=ckpt), tj.duration_s, gpu_type
            )
            self.order.append(tj.id)
            self.events.push(tj.submit_s, EventKind.ARRIVAL, tj.id)
        self.pending: dict[str, Job] = {}
        self.arrived: set[str] = set()
        """Jobs that arrived at this instant: the cycle estimates when they start."""
        self.running: dict[str, RunningJob] = {}
        # Service and true remaining time of the pending jobs, kept up to date (both
        # change only when a job is preempted) instead of collected every cycle.
        self.pending_attained: dict[str, float] = {}
        self.pending_remaining: dict[str, float] = {}
        self.running_progress: dict[str, _Progress] = {}
        self.estimator = HistoryEstimator()
        # Start-time estimates learn run times from the same finished jobs, and how
        # far their plans fell from real starts; they never reach a decision.
        self.start_estimates = StartEstimates(
            runtimes=self.estimator,
            user_estimates={k: p.trace.estimate_s for k, p in self.jobs.items()},
        )
        self.allocated: dict[tuple[str, str], int] = {}
        self.demand: dict[tuple[str, str], int] = {}
        self.sampled: dict[tuple[str, str], tuple[int, int]] = {}
        self.touched: set[tuple[str, str]] = set()
        self.usage: list[UsageSample] = []
        # The same series with only the waiting jobs whose gang fits within their
        # tenant's guarantee counted in the demand.
        by_name = {t.name: t for t in self.tenants}
        self.within = {
            k: (t := by_name.get(p.job.tenant)) is not None
            and p.job.total_gpu_milli <= t.quota(p.gpu_type).guaranteed_milli
            for k, p in self.jobs.items()
        }
        self.guaranteed = {
            (p.job.tenant, p.gpu_type): t.quota(p.gpu_type).guaranteed_milli
            for p in self.jobs.values()
            if (t := by_name.get(p.job.tenant)) is not None
        }
        self.waiting_within: dict[tuple[str, str], Counter[int]] = {}
        """Per (tenant, GPU type): the sizes of the waiting jobs that fit within the
        tenant's guarantee, counted by size."""
        self.sampled_within: dict[tuple[str, str], tuple[int, int]] = {}
        self.usage_within: list[UsageSample] = []
        self.reserved_idle: list[tuple[float, int]] = []
        self.cycle_reserved = 0
        self.wakes: set[float] = set()
        self.decisions: list[str] = []
        self.cycles = 0
        self.finished = 0
        self.progress = progress
        self.credits: CreditBook | None = None
        self.changes: list[TimedChange] = []
        self.start_tenants = self.tenants
        self.capacity_milli = self.state.capacity_milli
        """The largest capacity in force during the replay (nodes may come and go)."""

    def add_changes(self, changes: Sequence[TimedChange]) -> None:
        tenants = {t.name for t in self.tenants}
        for change in changes:
            known = self.node_type if change.kind is ChangeKind.NODE else tenants
            if change.subject not in known:
                what = "node" if change.kind is ChangeKind.NODE else "tenant"
                raise ValueError(f"a {change.kind} change names no {what} {change.subject!r}")
            self.events.push(change.time_s, EventKind.CHANGE, change.subject, len(self.changes))
            self.changes.append(change)

    # -- the loop ------------------------------------------------------------

    def run(self) -> ReplayResult:
        total = len(self.jobs)
        while self.events:
            batch = self.events.pop_instant()
            now = batch[0].time_s
            for ev in batch:
                if ev.kind == EventKind.COMPLETION:
                    self._complete(ev.job_id, ev.attempt, now)
                elif ev.kind == EventKind.ARRIVAL:
                    self._arrive(ev.job_id, now)
                elif ev.kind == EventKind.CHANGE:
                    self._change(self.changes[ev.attempt], now)
                else:
                    self.wakes.discard(now)
            if self.credits is not None:  # the ledger's clock, and its stop policy
                self.credits.observe(now)
                for job_id in self.credits.to_stop(now):
                    self._preempt(job_id, now)
            self.cycle_reserved = 0
            if self.pending:
                self._cycle(now)
            self.arrived.clear()
            if self.cycle_reserved != (self.reserved_idle[-1][1] if self.reserved_idle else 0):
                self.reserved_idle.append((now, self.cycle_reserved))
            self._sample(now)
            if self.progress is not None:
                self.progress(self.finished, total)
        return ReplayResult(self._log(), self.decisions, self.cycles)

    def _arrive(self, job_id: str, now: float) -> None:
        p = self.jobs[job_id]
        if self.profile.estimator == Estimator.HISTORY:
            est = self.estimator.estimate(p.job.tenant, p.job.total_gpu_milli, p.job.estimate_s)
            if est != p.job.estimate_s:
                p.job = _with_estimate(p.job, est)
        self.pending[job_id] = p.job
        self.pending_attained[job_id] = p.attained_gpu_s
        self.pending_remaining[job_id] = p.remaining_s
        self.arrived.add(job_id)
        self._add_demand(p, +1)
        self._add_waiting(p, +1)

    def _complete(self, job_id: str, attempt: int, now: float) -> None:
        p = self.jobs[job_id]
        if attempt != p.attempt or job_id not in self.running:
            return  # a completion scheduled before the job was preempted
        run = self.running.pop(job_id)
        del self.running_progress[job_id]
        self.state.release(job_id)
        self.state.commit()
        p.finish_s = now
        p.remaining_s = 0.0
        self._add_alloc(p, run.placement, -1)
        self._add_demand(p, -1)
        if self.credits is not None:
            self.credits.stop(job_id, now)
        self.finished += 1
        self.estimator.observe(
            p.job.tenant, p.job.total_gpu_milli, p.trace.duration_s or 0.0, p.job.kind
        )
        self.decisions.append(f"{now:.3f} finish {job_id}")

    def _cycle(self, now: float) -> None:
        tenants, pending = self.tenants, tuple(self.pending.values())
        if self.credits is not None:
            tenants, pending = self.credits.gate(now, tenants, pending, self.running)
        snap = ClusterSnapshot(
            now=now,
            nodes=self.nodes,
            tenants=tenants,
            running=tuple(self.running.values()),
            pending=pending,
            attained_gpu_s=self.pending_attained if self.profile.ordering.preemptive else {},
            true_remaining_s=self._true_remaining(now) if self.profile.needs_true_remaining else {},
            base_state=self.state,
            usage_milli=self.allocated,
            running_by_id=self.running,
            explain=False,
            estimate_ids=frozenset(self.arrived),
            estimates=self.start_estimates,
        )
        result = schedule(snap, self.profile)
        self.cycles += 1
        self._apply(result, now)
        self.cycle_reserved = sum(h.idle_gpu_milli for h in result.reservations)
        wake = result.wake_at_s
        if wake is not None and wake > now and wake not in self.wakes:
            self.wakes.add(wake)
            self.events.push(wake, EventKind.WAKE, "")
        self._record_estimates(result)

    def _record_estimates(self, result: CycleResult) -> None:
        """Keep the estimate each job got in the cycle of its arrival (estimates never
        change decisions: they are read after those are applied)."""
        if not self.arrived:
            return
        for pend in result.pending:
            if pend.job_id in self.arrived:
                p = self.jobs[pend.job_id]
                p.eta_recorded = True
                p.eta_start_s = pend.estimated_start_s
                p.eta_late_s = pend.late_start_s
                if pend.planned_start_s is not None and pend.basis is not None:
                    p.eta_plan = (pend.basis, str(pend.reason), pend.planned_start_s)
        self.arrived.clear()

    def _true_remaining(self, now: float) -> dict[str, float]:
        out = dict(self.pending_remaining)
        # Conditional expressions rather than max(): this runs for every running job
        # in every cycle of an oracle replay.
        for k, p in self.running_progress.items():
            ran = now - p.started_s - p.overhead_s
            left = p.remaining_s - ran if ran > 0.0 else p.remaining_s
            out[k] = left if left > 0.0 else 0.0
        return out

    # -- timed changes ---------------------------------------------------------

    def _change(self, change: TimedChange, now: float) -> None:
        if change.kind is ChangeKind.NODE:
            self._node_change(change.subject, change.node_state or NodeState.READY, now)
            return
        tenants = list(self.tenants)
        k = next(k for k, t in enumerate(tenants) if t.name == change.subject)
        t = tenants[k]
        if change.kind is ChangeKind.QUOTA and change.quota is not None:
            quotas = dict(t.quotas)
            quotas[change.gpu_type] = change.quota
            t = replace(t, quotas=tuple(sorted(quotas.items())))
        elif change.kind is ChangeKind.WEIGHT and change.weight is not None:
            t = replace(t, weight=change.weight)
        elif change.kind is ChangeKind.COHORT:
            t = replace(t, cohort=change.cohort)
        tenants[k] = t
        self.tenants = tuple(tenants)
        self.decisions.append(f"{now:.3f} change {change.kind} {change.subject}")

    def _node_change(self, name: str, state: NodeState, now: float) -> None:
        i = self.state.index_of[name]
        self.nodes = (*self.nodes[:i], replace(self.nodes[i], state=state), *self.nodes[i + 1 :])
        self.state.set_schedulable(name, state == NodeState.READY)
        self.capacity_milli = max(self.capacity_milli, self.state.capacity_milli)
        self.decisions.append(f"{now:.3f} node {name} {state}")
        if state == NodeState.DOWN:
            lost = sorted(
                job_id
                for job_id, run in self.running.items()
                if any(rp.node == name for rp in run.placement)
            )
            for job_id in lost:
                self._preempt(job_id, now)
                self.decisions.append(f"{now:.3f} preempt {job_id} {PreemptReason.NODE_DOWN} None")
        self.state.commit()

    # -- applying decisions ----------------------------------------------------

    def _apply(self, result: CycleResult, now: float) -> None:
        reclaimed_for = set()
        for pre in result.preemptions:
            self._preempt(pre.job_id, now)
            if pre.for_job is not None:
                reclaimed_for.add(pre.for_job)
            self.decisions.append(f"{now:.3f} preempt {pre.job_id} {pre.reason} {pre.for_job}")
        for st in result.starts:
            p = self.jobs[st.job_id]
            if p.waiting_guarantee_since is not None:
                p.reclaim_wait_s = (p.reclaim_wait_s or 0.0) + now - p.waiting_guarantee_since
                p.waiting_guarantee_since = None
            elif st.job_id in reclaimed_for and p.reclaim_wait_s is None:
                p.reclaim_wait_s = 0.0
            self._start(st.job_id, st.placement, now)
            where = ",".join(
                f"{rp.node}:{'+'.join(map(str, rp.gpu_indices))}" for rp in st.placement
            )
            self.decisions.append(f"{now:.3f} start {st.job_id} {where}")
        for pend in result.pending:
            if pend.reason == PendingReason.WAITING_FOR_GUARANTEE:
                p = self.jobs[pend.job_id]
                if p.waiting_guarantee_since is None:
                    p.waiting_guarantee_since = now
        self.state.commit()

    def _start(self, job_id: str, placement: Placement, now: float) -> None:
        p = self.jobs[job_id]
        job = self.pending.pop(job_id)
        self._add_waiting(p, -1)
        del self.pending_attained[job_id]
        del self.pending_remaining[job_id]
        self.state.assign(job_id, placement)
        p.attempt += 1
        p.started_s = now
        p.overhead_s = self.config.restart_overhead_s if p.preemptions else 0.0
        if p.first_start_s is None:
            p.first_start_s = now
            if p.eta_plan is not None:
                basis, reason, planned = p.eta_plan
                submit = p.trace.submit_s
                self.start_estimates.spread.observe(
                    basis, reason, p.job.total_gpu_milli, planned - submit, now - submit
                )
        self.running_progress[job_id] = p
        self.running[job_id] = RunningJob(
            job=job, placement=placement, started_s=now, attained_gpu_s=p.attained_gpu_s
        )
        self._add_alloc(p, placement, +1)
        if self.credits is not None:
            self.credits.start(job, placement, self.node_type, now)
        self.events.push(
            now + p.overhead_s + p.remaining_s, EventKind.COMPLETION, job_id, p.attempt
        )

    def _preempt(self, job_id: str, now: float) -> None:
        p = self.jobs[job_id]
        run = self.running.pop(job_id)
        del self.running_progress[job_id]
        self.state.release(job_id)
        elapsed = max(0.0, now - p.started_s)
        every = p.job.checkpoint_every_s or 0.0
        saved_wall = elapsed if every <= 0 else math.floor(elapsed / every) * every
        saved = min(p.remaining_s, max(0.0, saved_wall - p.overhead_s))
        gpus = p.job.total_gpu_milli / GPU_MILLI
        p.remaining_s -= saved
        p.lost_gpu_s += (elapsed - saved) * gpus
        if self.credits is not None:
            self.credits.stop(job_id, now, lost_s=elapsed - saved)
        p.attained_gpu_s += elapsed * gpus
        p.preemptions += 1
        self.pending[job_id] = p.job
        self.pending_attained[job_id] = p.attained_gpu_s
        self.pending_remaining[job_id] = p.remaining_s
        self._add_waiting(p, +1)
        self._add_alloc(p, run.placement, -1)

    # -- usage series ------------------------------------------------------------

    def _add_alloc(self, p: _Progress, placement: Placement, sign: int) -> None:
        for rp in placement:
            key = (p.job.tenant, self.node_type[rp.node])
            milli = sign * rp.gpu_milli * len(rp.gpu_indices)
            self.allocated[key] = self.allocated.get(key, 0) + milli
            self.touched.add(key)

    def _add_demand(self, p: _Progress, sign: int) -> None:
        key = (p.job.tenant, p.gpu_type)
        milli = sign * p.job.total_gpu_milli
        self.demand[key] = self.demand.get(key, 0) + milli
        self.touched.add(key)

    def _add_waiting(self, p: _Progress, sign: int) -> None:
        if not self.within[p.trace.id]:
            return
        key = (p.job.tenant, p.gpu_type)
        self.waiting_within.setdefault(key, Counter())[p.job.total_gpu_milli] += sign
        self.touched.add(key)

    def _owed(self, key: tuple[str, str], held: int) -> int:
        """What the waiting jobs of ``waiting_within[key]`` could add to ``held`` within
        the guarantee: sizes taken largest first while they fit (the most that fits
        when every size divides the larger ones, as powers of two do)."""
        room = self.guaranteed.get(key, 0) - held
        owed = 0
        waiting = self.waiting_within.get(key)
        if room <= 0 or not waiting:
            return 0
        for size in sorted(waiting, reverse=True):
            count = waiting[size]
            if size <= 0 or count <= 0 or size > room:
                continue
            take = min(count, room // size)
            owed += take * size
            room -= take * size
        return owed

    def _sample(self, now: float) -> None:
        for key in sorted(self.touched):
            value = (self.allocated.get(key, 0), self.demand.get(key, 0))
            if self.sampled.get(key) != value:
                self.sampled[key] = value
                self.usage.append(UsageSample(now, key[0], key[1], value[0], value[1]))
            # Everything held, and wanted: that plus what waiting jobs could still
            # start beside it within the guarantee.
            held = self.allocated.get(key, 0)
            value = (held, held + self._owed(key, held))
            if self.sampled_within.get(key, (0, 0)) != value:
                self.sampled_within[key] = value
                self.usage_within.append(UsageSample(now, key[0], key[1], value[0], value[1]))
        self.touched.clear()

    def _log(self) -> SimLog:
        outcomes = []
        for job_id in self.order:
            p = self.jobs[job_id]
            outcomes.append(
                JobOutcome(
                    job_id=job_id,
                    tenant=p.job.tenant,
                    gpu_type=p.gpu_type,
                    gpu_milli=p.job.total_gpu_milli,
                    submit_s=p.trace.submit_s,
                    first_start_s=p.first_start_s,
                    finish_s=p.finish_s,
                    duration_s=p.trace.duration_s or 0.0,
                    preemptions=p.preemptions,
                    lost_gpu_s=p.lost_gpu_s,
                    reclaim_wait_s=p.reclaim_wait_s,
                    eta_recorded=p.eta_recorded,
                    eta_start_s=p.eta_start_s,
                    eta_late_s=p.eta_late_s,
                )
            )
        start = min((o.submit_s for o in outcomes), default=0.0)
        end = max((o.finish_s for o in outcomes if o.finish_s is not None), default=start)
        tenants = self.start_tenants
        guarantees = {
            (t.name, gpu_type): q.guaranteed_milli for t in tenants for gpu_type, q in t.quotas
        }
        return SimLog(
            outcomes=tuple(outcomes),
            usage=tuple(self.usage),
            capacity_milli=self.capacity_milli,
            start_s=start,
            end_s=end,
            guarantees=guarantees,
            weights={t.name: t.weight for t in tenants},
            reserved_idle=tuple(self.reserved_idle),
            usage_within=tuple(self.usage_within),
        )


def _with_estimate(job: Job, estimate_s: float | None) -> Job:
    return replace(job, estimate_s=estimate_s)
