"""What if: replay a cluster's own history twice, as configured and with changes.

The history is an export of the platform (``mosu history export``: jobs with their real
run times and starts, the tenants, quotas and nodes in force, the scheduling profile).
Both replays run the same jobs through the same engine (``sim.replay``); only the
changes differ. Every number comes from ``sim.metrics``: ``tenant_report`` of each
replay, and ``wait_error`` of the as-configured replay against the real waits, which
says how far the answer can be trusted.

Modelling choices, each a property of the platform being replayed:

- A job runs for the run time of its last attempt (``traces.native`` docs); a job
  cancelled before it ever started consumed nothing and is left out (counted).
- A preempted job restarts its command from scratch (the platform does not checkpoint
  for it), so a replayed preemption loses all the attempt's work and no restart
  overhead is added: the measured run time already includes the start.
- With a ``tick_s`` > 0, submissions are moved to the next tick and run times rounded
  to whole ticks, as a scheduler that decides once per tick would see them: fewer
  instants to schedule at, so a long history replays faster (``bench_whatif.py``
  compares both), at the price of up to one tick of wait per job.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosu.core.credits import RateCard
from mosu.core.errors import InvalidInput
from mosu.core.models import ANY_GPU_TYPE, GPU_MILLI, Node, Quota, Tenant
from mosu.engine.policies import POLICIES, PolicyContext, TaskMix, make_placement
from mosu.engine.profiles import PROFILES, SchedulingProfile, build_profile
from mosu.sim.credits import CreditFileError, load_rates, metering_book
from mosu.sim.metrics import tenant_report, wait_error
from mosu.sim.records import SimLog
from mosu.sim.replay import ReplayConfig, replay
from mosu.traces import native
from mosu.traces.schema import ChangeKind, Ended, TimedChange, TraceJob

NO_CHECKPOINT_S = 1e12
"""A checkpoint interval no attempt reaches: a preempted job keeps none of its work."""
REPLAY_CONFIG = ReplayConfig(checkpoint_every_s=NO_CHECKPOINT_S, restart_overhead_s=0.0)
META_FILE = "export.json"
RATES_FILE = "rates.csv"
CHANGES_FILE = "changes.csv"


@dataclass(frozen=True)
class History:
    """A platform's exported history: what ``mosu history export`` writes."""

    jobs: tuple[TraceJob, ...]
    tenants: tuple[Tenant, ...]
    nodes: tuple[Node, ...]
    profile: str = "mosu"
    min_runtime_s: float | None = None
    origin: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    rates: RateCard | None = None
    """The platform's rate card over the window (trace clock), if it had one."""
    changes: tuple[TimedChange, ...] = ()
    """Quota and node changes made during the window (trace clock), replayed at their
    times; ``tenants`` and ``nodes`` are those in force at its start."""


def load_rates_file(path: str | Path, option: str = "rates") -> RateCard:
    """A rates CSV (``sim.credits``) on the trace clock; a bad file names ``option``."""
    try:
        return load_rates(Path(path), 0.0)
    except (CreditFileError, OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(str(exc), field=option) from None


def load_history(directory: str | Path) -> History:
    """The export in ``directory``: jobs.csv, tenants.csv, nodes.csv and export.json
    (optional: without it, the default profile and trace time 0 at epoch 0); rates.csv
    and changes.csv when there."""
    where = Path(directory)
    meta: dict[str, Any] = {}
    if (where / META_FILE).exists():
        try:
            meta = json.loads((where / META_FILE).read_text())
        except ValueError as exc:
            raise InvalidInput(f"{where / META_FILE}: not JSON ({exc})", field="history") from None
    profile = str(meta.get("profile") or "mosu")
    rates = where / RATES_FILE
    changes = where / CHANGES_FILE
    return History(
        jobs=tuple(native.load_jobs(where / "jobs.csv")),
        tenants=tuple(native.load_tenants(where / "tenants.csv")),
        nodes=tuple(native.load_nodes(where / "nodes.csv")),
        profile=profile,
        min_runtime_s=meta.get("min_runtime_s"),
        origin=float(meta.get("origin") or 0.0),
        counts=dict(meta.get("counts") or {}),
        rates=load_rates_file(rates, "history") if rates.exists() else None,
        changes=tuple(native.load_changes(changes)) if changes.exists() else (),
    )


# ---------------------------------------------------------------- changes


@dataclass(frozen=True)
class Changes:
    """What the second replay changes. Amounts are GPU milli; a limit of None removes it;
    a cohort of None puts the tenant in the default cohort."""

    guarantees: tuple[tuple[str, str, int], ...] = ()
    limits: tuple[tuple[str, str, int | None], ...] = ()
    weights: tuple[tuple[str, float], ...] = ()
    cohorts: tuple[tuple[str, str | None], ...] = ()
    profile: str | None = None
    placement: str | None = None
    add_nodes: tuple[str, ...] = ()
    remove_nodes: tuple[str, ...] = ()
    rates: RateCard | None = None
    """Charge the changed replay at this card instead of the platform's."""
    rates_from: str = ""
    """Where ``rates`` came from, for the report."""

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in dataclasses.fields(self))

    def describe(self) -> list[str]:
        out = [f"guarantee {t} {g}={_gpus(m)}" for t, g, m in self.guarantees]
        out += [f"limit {t} {g}={'none' if m is None else _gpus(m)}" for t, g, m in self.limits]
        out += [f"weight {t}={w:g}" for t, w in self.weights]
        out += [f"cohort {t}={c or '(default)'}" for t, c in self.cohorts]
        out += [f"profile {self.profile}"] if self.profile else []
        out += [f"placement {self.placement}"] if self.placement else []
        out += [f"add nodes {spec}" for spec in self.add_nodes]
        out += [f"remove node {name}" for name in self.remove_nodes]
        out += [f"rates from {self.rates_from or 'the request'}"] if self.rates else []
        return out


def _gpus(milli: int) -> str:
    return f"{milli / GPU_MILLI:g}"


def _split_tenant(text: str, option: str, example: str) -> tuple[str, str]:
    tenant, sep, rest = text.partition("=")
    if not sep or not tenant.strip():
        raise InvalidInput(f"bad {text!r}: expected {example}", field=option)
    return tenant.strip(), rest.strip()


def parse_quota_change(text: str, option: str) -> tuple[str, str, int | None]:
    """``TENANT=TYPE:GPUS`` (``*`` for any type); a limit may be ``none``."""
    example = "TENANT=TYPE:GPUS such as acme=H800:16"
    tenant, rest = _split_tenant(text, option, example)
    gpu_type, sep, amount = rest.rpartition(":")
    if not sep or not gpu_type.strip():
        raise InvalidInput(f"bad {text!r}: expected {example}", field=option)
    if option == "set-limit" and amount.strip().lower() == "none":
        return tenant, gpu_type.strip(), None
    try:
        gpus = float(amount)
    except ValueError:
        raise InvalidInput(f"bad {text!r}: {amount!r} is not a number", field=option) from None
    if not gpus >= 0 or gpus == float("inf"):
        raise InvalidInput(f"bad {text!r}: GPUs must be >= 0, got {amount}", field=option)
    return tenant, gpu_type.strip(), round(gpus * GPU_MILLI)


def parse_weight(text: str) -> tuple[str, float]:
    tenant, amount = _split_tenant(text, "set-weight", "TENANT=WEIGHT such as acme=2")
    try:
        weight = float(amount)
    except ValueError:
        raise InvalidInput(
            f"bad {text!r}: {amount!r} is not a number", field="set-weight"
        ) from None
    if not 0 < weight < float("inf"):
        raise InvalidInput(f"bad {text!r}: must be > 0, got {amount}", field="set-weight")
    return tenant, weight


def parse_cohort(text: str) -> tuple[str, str | None]:
    """``TENANT=COHORT``; an empty cohort is the default one."""
    tenant, cohort = _split_tenant(text, "cohort", "TENANT=COHORT such as acme=lab-a")
    return tenant, cohort or None


# ---------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class Scenario:
    tenants: tuple[Tenant, ...]
    nodes: tuple[Node, ...]
    profile: SchedulingProfile
    profile_name: str
    changes: tuple[TimedChange, ...] = ()
    """The history's timed changes this scenario replays."""


def base_scenario(history: History) -> Scenario:
    return Scenario(
        history.tenants,
        history.nodes,
        _profile(history, history.profile),
        history.profile,
        history.changes,
    )


def _profile(history: History, name: str) -> SchedulingProfile:
    if name not in PROFILES:
        raise InvalidInput(
            f"unknown profile {name!r}; known: {', '.join(PROFILES)}", field="profile"
        )
    profile = build_profile(name)
    if history.min_runtime_s is not None:
        profile = dataclasses.replace(profile, min_runtime_s=history.min_runtime_s)
    return profile


def changed_scenario(history: History, changes: Changes, jobs: Sequence[TraceJob]) -> Scenario:
    """The history's configuration with ``changes`` applied, every change checked: an
    unknown tenant or node, a GPU type the cluster does not have, a limit below its
    guarantee are errors naming the option."""
    nodes = list(history.nodes)
    names = {n.name for n in nodes}
    for name in changes.remove_nodes:
        if name not in names:
            raise InvalidInput(f"no node {name!r} in the cluster", field="remove-node")
        names.discard(name)
    nodes = [n for n in nodes if n.name in names]
    for spec in changes.add_nodes:
        added = native.parse_cluster_spec(spec)
        taken = {n.name for n in nodes}
        for node in added:
            node_name, k = node.name, 1
            while node_name in taken:  # a new node never shadows one of the cluster's
                node_name, k = f"{node.name}-new{k}", k + 1
            taken.add(node_name)
            nodes.append(dataclasses.replace(node, name=node_name))
    gpu_types = {n.gpu_type for n in nodes if n.gpus}
    tenants = {t.name: t for t in history.tenants}

    def tenant(name: str, option: str) -> Tenant:
        if name not in tenants:
            raise InvalidInput(
                f"unknown tenant {name!r}; tenants: {', '.join(sorted(tenants))}",
                field=option,
            )
        return tenants[name]

    def gpu_type_known(gpu_type: str, option: str) -> None:
        if gpu_type != ANY_GPU_TYPE and gpu_type not in gpu_types:
            raise InvalidInput(
                f"GPU type {gpu_type!r} is not in the cluster; it has "
                f"{', '.join(sorted(gpu_types)) or 'none'}",
                field=option,
            )

    for name, gpu_type, milli in changes.guarantees:
        t = tenant(name, "set-guarantee")
        gpu_type_known(gpu_type, "set-guarantee")
        old = _own_quota(t, gpu_type)
        tenants[name] = _with_quota(t, gpu_type, Quota(milli, old.limit_milli))
    for name, gpu_type, limit in changes.limits:
        t = tenant(name, "set-limit")
        gpu_type_known(gpu_type, "set-limit")
        old = _own_quota(t, gpu_type)
        tenants[name] = _with_quota(t, gpu_type, Quota(old.guaranteed_milli, limit))
    for name, weight in changes.weights:
        tenants[name] = dataclasses.replace(tenant(name, "set-weight"), weight=weight)
    for name, cohort in changes.cohorts:
        tenants[name] = dataclasses.replace(tenant(name, "cohort"), cohort=cohort)
    for t in tenants.values():
        for gpu_type, q in t.quotas:
            if q.limit_milli is not None and q.limit_milli < q.guaranteed_milli:
                raise InvalidInput(
                    f"tenant {t.name!r} {gpu_type}: limit {_gpus(q.limit_milli)} is below "
                    f"its guarantee {_gpus(q.guaranteed_milli)}",
                    field="set-limit",
                )
    name = changes.profile or history.profile
    profile = _profile(history, name)
    if changes.placement is not None:
        if changes.placement not in POLICIES:
            raise InvalidInput(
                f"unknown placement {changes.placement!r}; known: {', '.join(POLICIES)}",
                field="placement",
            )
        mix = TaskMix.observe((j.shape, j.gpu_types) for j in jobs for _ in range(j.replicas))
        policy = make_placement(changes.placement, PolicyContext(mix, random.Random(0)))
        profile = dataclasses.replace(profile, placement=policy)
    timed = _timed_under(history.changes, changes)
    return Scenario(tuple(tenants.values()), tuple(nodes), profile, name, timed)


def _timed_under(timed: Sequence[TimedChange], changes: Changes) -> tuple[TimedChange, ...]:
    """The history's timed changes under the what-if's: a guarantee, limit, weight or
    cohort the what-if sets holds for the whole window (a timed quota change keeps
    only its other half), and a removed node's changes go with it."""
    guarantees = {(t, g): m for t, g, m in changes.guarantees}
    limits = {(t, g): m for t, g, m in changes.limits}
    weights = {t for t, _ in changes.weights}
    cohorts = {t for t, _ in changes.cohorts}
    removed = set(changes.remove_nodes)
    out = []
    for c in timed:
        if c.kind is ChangeKind.NODE and c.subject in removed:
            continue
        if (c.kind is ChangeKind.WEIGHT and c.subject in weights) or (
            c.kind is ChangeKind.COHORT and c.subject in cohorts
        ):
            continue
        if c.kind is ChangeKind.QUOTA and c.quota is not None:
            key = (c.subject, c.gpu_type)
            quota = Quota(
                guarantees.get(key, c.quota.guaranteed_milli),
                limits.get(key, c.quota.limit_milli),
            )
            if quota.limit_milli is not None and quota.limit_milli < quota.guaranteed_milli:
                quota = Quota(quota.guaranteed_milli, quota.guaranteed_milli)
            c = dataclasses.replace(c, quota=quota)
        out.append(c)
    return tuple(out)


def _own_quota(tenant: Tenant, gpu_type: str) -> Quota:
    return dict(tenant.quotas).get(gpu_type, Quota())


def _with_quota(tenant: Tenant, gpu_type: str, quota: Quota) -> Tenant:
    quotas = dict(tenant.quotas)
    quotas[gpu_type] = quota
    return dataclasses.replace(tenant, quotas=tuple(sorted(quotas.items())))


# ---------------------------------------------------------------- running it


@dataclass
class WhatIf:
    """Both replays and the report: ``report`` is JSON-ready."""

    before: SimLog
    after: SimLog
    report: dict[str, Any]


def replayable(jobs: Sequence[TraceJob]) -> tuple[list[TraceJob], int]:
    """The jobs a replay runs, and how many were left out (cancelled before starting)."""
    kept = [
        j
        for j in jobs
        if not (j.history and j.history.ended is Ended.CANCELLED and j.history.start_s is None)
    ]
    return kept, len(jobs) - len(kept)


def real_waits(jobs: Sequence[TraceJob]) -> dict[str, float]:
    """Each job's real wait (first start − submit), for jobs that really started."""
    return {
        j.id: j.history.start_s - j.submit_s
        for j in jobs
        if j.history is not None and j.history.start_s is not None
    }


Progress = Callable[[str, int, int], None]
"""Called with the replay's name (``as configured`` or ``changed``), jobs done, jobs."""


@dataclass(frozen=True)
class Plan:
    """Two checked scenarios over the replayable jobs, ready to run."""

    history: History
    changes: Changes
    jobs: tuple[TraceJob, ...]
    left_out: int
    base: Scenario
    changed: Scenario
    tick_s: float = 0.0

    def rate_cards(self) -> tuple[RateCard | None, RateCard | None]:
        """The card each replay is charged at: the platform's, the changed one for the
        second; when only a changed card is known, both use it (same prices, so only
        the scheduling differs); no card: no credits in the report."""
        platform, changed = self.history.rates, self.changes.rates
        if platform is None and changed is None:
            return None, None
        if changed is None:
            return platform, platform
        return (platform if platform is not None else changed), changed


def changes_on_ticks(changes: Sequence[TimedChange], tick_s: float) -> tuple[TimedChange, ...]:
    """Timed changes moved to the next tick, as submissions are."""
    return tuple(
        dataclasses.replace(c, time_s=math.ceil(c.time_s / tick_s) * tick_s) for c in changes
    )


def on_ticks(jobs: Sequence[TraceJob], tick_s: float) -> list[TraceJob]:
    """Submissions moved to the next tick, run times rounded to whole ticks."""
    return [
        dataclasses.replace(
            j,
            submit_s=math.ceil(j.submit_s / tick_s) * tick_s,
            duration_s=round((j.duration_s or 0.0) / tick_s) * tick_s,
        )
        for j in jobs
    ]


def plan_whatif(history: History, changes: Changes, *, tick_s: float = 0.0) -> Plan:
    """Check ``changes`` against ``history`` (errors name the option) before any replay;
    ``tick_s`` > 0 replays on ticks of that many seconds (see the module docstring)."""
    if not changes:
        raise InvalidInput("no change given: say what to change (see --help)", field="changes")
    if not (0 <= tick_s < math.inf):
        raise InvalidInput(f"must be >= 0, got {tick_s}", field="tick")
    jobs, left_out = replayable(history.jobs)
    if tick_s > 0:
        jobs = on_ticks(jobs, tick_s)
        history = dataclasses.replace(history, changes=changes_on_ticks(history.changes, tick_s))
    base = base_scenario(history)
    changed = changed_scenario(history, changes, jobs)
    if not jobs:
        raise InvalidInput("the history has no job to replay", field="history")
    return Plan(history, changes, tuple(jobs), left_out, base, changed, tick_s)


def run_whatif(
    plan: Plan,
    *,
    progress: Progress | None = None,
    config: ReplayConfig = REPLAY_CONFIG,
) -> WhatIf:
    """Replay ``plan``'s jobs as configured, then changed; compare. With a rate card (the
    platform's, or the changed one), each replay is also charged as the platform charges
    (``sim.credits``; nobody is held for credits, so the decisions do not change)."""
    logs: list[SimLog] = []
    cards = plan.rate_cards()
    burned: list[dict[str, float]] = []
    for (label, scenario), card in zip(
        (("as configured", plan.base), ("changed", plan.changed)), cards, strict=True
    ):

        def tick(done: int, total: int, label: str = label) -> None:
            if progress is not None:
                progress(label, done, total)

        book = None if card is None else metering_book(card, scenario.tenants)
        result = replay(
            plan.jobs,
            scenario.tenants,
            scenario.nodes,
            scenario.profile,
            config,
            progress=tick,
            credits=book,
            changes=scenario.changes,
        )
        logs.append(result.log)
        if book is not None:
            burned.append({t: float(v["burned"] or 0.0) for t, v in book.summary().items()})
    before, after = logs
    report = {
        "jobs": len(plan.jobs),
        "left_out_cancelled_before_start": plan.left_out,
        "history_counts": dict(plan.history.counts),
        "profile": plan.base.profile_name,
        "changes": plan.changes.describe(),
        "before": tenant_report(before),
        "after": tenant_report(after),
        "tick_s": plan.tick_s,
        # Real waits from the unquantised history: a tick's delay is part of the error.
        "fidelity": wait_error(before, real_waits(plan.history.jobs)),
        "rates": {
            "before": "platform" if cards[0] is not None else None,
            "after": None if cards[1] is None else plan.changes.rates_from or "platform",
        },
    }
    if burned:
        for side, spent in zip(("before", "after"), burned, strict=True):
            for tenant, row in report[side]["tenants"].items():
                row["credits_burned"] = round(spent.get(tenant, 0.0), 6)
            report[side]["overall"]["credits_burned"] = round(sum(spent.values()), 6)
    return WhatIf(before, after, report)


# ---------------------------------------------------------------- the report as text


COLUMNS = (
    ("avg wait", "avg_wait_s", "time"),
    ("p95 wait", "p95_wait_s", "time"),
    ("avg JCT", "avg_jct_s", "time"),
    ("attainment", "quota_attainment", "ratio"),
    ("borrowed GPU-h", "borrowed_gpu_h", "number"),
    ("preemptions", "preemptions", "count"),
    ("lost GPU-h", "lost_gpu_h", "number"),
)
CREDITS_COLUMN = ("credits", "credits_burned", "number")


def columns(report: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """The report's columns: credits burned only when a rate card was known."""
    charged = "credits_burned" in report["before"]["overall"]
    return (*COLUMNS, CREDITS_COLUMN) if charged else COLUMNS


def _show(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "time":
        return f"{value / 60:,.1f}m" if value >= 60 else f"{value:,.1f}s"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "count":
        return f"{value:,}"
    return f"{value:,.1f}"


def pair(before: Any, after: Any, kind: str) -> str:
    return f"{_show(before, kind)} → {_show(after, kind)}"


def comparison_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per tenant, then the overall row: each cell ``before → after``."""
    before, after = report["before"], report["after"]
    shown = columns(report)
    rows = []
    for tenant in sorted(set(before["tenants"]) | set(after["tenants"])):
        b, a = before["tenants"].get(tenant, {}), after["tenants"].get(tenant, {})
        cells = [pair(b.get(key), a.get(key), kind) for _, key, kind in shown]
        rows.append([tenant, str(b.get("jobs", a.get("jobs", 0))), *cells])
    b, a = before["overall"], after["overall"]
    cells = [pair(b.get(key), a.get(key), kind) for _, key, kind in shown]
    rows.append(["all (min attainment)", str(b["jobs"]), *cells])
    return rows


def fidelity_line(report: dict[str, Any]) -> str:
    f = report["fidelity"]
    if not f["jobs"]:
        return "fidelity: no job both started for real and in the replay"
    return (
        f"fidelity of the as-configured replay over {f['jobs']:,} jobs: wait error median "
        f"{_show(f['median_error_s'], 'time')}, p90 {_show(f['p90_error_s'], 'time')} "
        f"(real median wait {_show(f['median_real_wait_s'], 'time')}, replayed "
        f"{_show(f['median_replayed_wait_s'], 'time')})"
    )
