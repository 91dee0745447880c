"""Credits in a replay: the platform's charging rules (``mosu.core.credits``: the rate
card, a run's cost, which grant a charge draws from, admission by reservation) applied to
simulated runs, so an operator can size vouchers on a real trace.

A run is charged when it stops, for its whole span, exactly as the platform's meter
would charge it in any number of intervals; work a preemption threw away is refunded.
Between stops a tenant's balance falls linearly with the cost per hour of what it runs,
which gives the time it runs out without metering every minute. The out-of-credit
policies act where the platform's do: ``hold`` and ``stop`` gate the pending jobs the
engine sees, ``best-effort`` zeroes the guarantees of a tenant that ran out, and ``stop``
requeues its running jobs at the next event (not the next minute).

Files (CSV with a header; times in seconds from the start of the replay):

- rates: ``resource,per_hour[,borrowed_per_hour][,from_s]`` (resource: a GPU type, ``*``,
  ``cpu`` per core or ``mem`` per GiB)
- grants: ``tenant,amount[,from_s][,expires_s][,priority][,policy][,note]``
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mosu.core.credits import (
    CreditPolicy,
    GrantState,
    Rate,
    RateCard,
    ReplicaUse,
    admit,
    draw,
    from_micro,
    to_micro,
    to_ms,
    undo_draws,
)
from mosu.core.models import GPU_MILLI, Job, Placement, Quota, RunningJob, Tenant

DEFAULT_RESERVE_S = 60.0
"""A job with no estimate reserves one metering interval, as on the platform."""


class CreditFileError(ValueError):
    pass


def _rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CreditFileError(f"{path}: missing column {missing[0]!r}")
        return [dict(r) for r in reader]


def _number(path: Path, line: int, row: Mapping[str, str], column: str) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise CreditFileError(f"{path}:{line}: {column} {text!r} is not a number") from None


def load_rates(path: Path, start_s: float) -> RateCard:
    rates = []
    for i, row in enumerate(_rows(path, ("resource", "per_hour")), start=2):
        per_hour = _number(path, i, row, "per_hour")
        if per_hour is None or per_hour < 0:
            raise CreditFileError(f"{path}:{i}: per_hour must be a number >= 0")
        borrowed = _number(path, i, row, "borrowed_per_hour")
        rates.append(
            Rate(
                resource=row["resource"].strip(),
                effective_ms=to_ms(start_s + (_number(path, i, row, "from_s") or 0.0)),
                micro_per_hour=to_micro(per_hour),
                borrowed_micro_per_hour=None if borrowed is None else to_micro(borrowed),
            )
        )
    return RateCard(rates)


@dataclass
class _Grant:
    state: GrantState
    note: str


def load_grants(
    path: Path, start_s: float
) -> tuple[dict[str, list[_Grant]], dict[str, CreditPolicy]]:
    grants: dict[str, list[_Grant]] = {}
    policies: dict[str, CreditPolicy] = {}
    for i, row in enumerate(_rows(path, ("tenant", "amount")), start=2):
        amount = _number(path, i, row, "amount")
        if amount is None or amount <= 0:
            raise CreditFileError(f"{path}:{i}: amount must be a number > 0")
        tenant = row["tenant"].strip()
        expires = _number(path, i, row, "expires_s")
        policy = (row.get("policy") or "").strip()
        if policy:
            try:
                policies[tenant] = CreditPolicy(policy)
            except ValueError:
                raise CreditFileError(
                    f"{path}:{i}: policy {policy!r} is not hold, best-effort or stop"
                ) from None
        grants.setdefault(tenant, []).append(
            _Grant(
                GrantState(
                    id=i,
                    remaining_micro=to_micro(amount),
                    effective_ms=to_ms(start_s + (_number(path, i, row, "from_s") or 0.0)),
                    expires_ms=None if expires is None else to_ms(start_s + expires),
                    priority=int(_number(path, i, row, "priority") or 0),
                ),
                (row.get("note") or "").strip(),
            )
        )
    return grants, policies


@dataclass
class _Run:
    tenant: str
    uses: list[ReplicaUse]
    start_ms: int
    hourly_micro: int
    reserve_micro: int
    draws: list[tuple[int | None, int]] = field(default_factory=list)


@dataclass
class TenantCredits:
    granted_micro: int = 0
    charged_micro: int = 0
    refunded_micro: int = 0
    expired_micro: int = 0
    gpu_hours: float = 0.0
    refunded_gpu_hours: float = 0.0
    exhausted_at_s: float | None = None


class CreditBook:
    """The ledger of one replay. The replay calls ``gate`` before each engine cycle and
    ``start``/``stop`` for each run; ``to_stop`` names jobs a ``stop`` policy ends."""

    def __init__(
        self,
        card: RateCard,
        grants: Mapping[str, Sequence[_Grant]],
        policies: Mapping[str, CreditPolicy],
        tenants: Iterable[Tenant],
        start_s: float,
    ) -> None:
        self.card = card
        self.start_s = start_s
        self.grants = {t: list(gs) for t, gs in grants.items()}
        self.limited = set(self.grants)
        """Tenants with a grant: only they are held, suspended or stopped."""
        self.policies = dict(policies)
        self.guarantee = {(t.name, k): q.guaranteed_milli for t in tenants for k, q in t.quotas}
        self.held: dict[tuple[str, str], int] = {}
        self.runs: dict[str, _Run] = {}
        self.stopping: set[str] = set()
        self.totals: dict[str, TenantCredits] = {t: TenantCredits() for t in self.grants}
        for t, gs in self.grants.items():
            self.totals[t].granted_micro = sum(g.state.remaining_micro for g in gs)
        # Per tenant: sums over its runs of cost per hour and cost per hour x start, so
        # what it has spent so far is linear in time (see the module).
        self.rate_sum: dict[str, int] = {}
        self.rate_start_sum: dict[str, float] = {}

    # -- balances ------------------------------------------------------------

    def _in_force(self, tenant: str, t_ms: int) -> list[GrantState]:
        return [g.state for g in self.grants.get(tenant, []) if g.state.in_force(t_ms)]

    def _settled(self, tenant: str, t_ms: int) -> int:
        """What is left of its grants in force, before the cost of its running jobs."""
        return sum(g.remaining_micro for g in self._in_force(tenant, t_ms))

    def _accrued(self, tenant: str, now: float) -> float:
        rate = self.rate_sum.get(tenant, 0)
        return (rate * to_ms(now) - self.rate_start_sum.get(tenant, 0.0)) / 3_600_000

    def balance_micro(self, tenant: str, now: float) -> float:
        return self._settled(tenant, to_ms(now)) - self._accrued(tenant, now)

    def observe(self, now: float) -> None:
        """At each event: expire grants and note tenants that ran out (at the crossing)."""
        t_ms = to_ms(now)
        for tenant, gs in self.grants.items():
            for g in gs:
                exp = g.state.expires_ms
                if exp is not None and exp <= t_ms and g.state.remaining_micro > 0:
                    self.totals[tenant].expired_micro += g.state.remaining_micro
                    g.state = dataclasses.replace(g.state, remaining_micro=0)
            total = self.totals[tenant]
            if total.exhausted_at_s is None and self.balance_micro(tenant, now) <= 0:
                rate = self.rate_sum.get(tenant, 0)
                settled = self._settled(tenant, t_ms)
                crossing = now
                if rate > 0 and settled > 0:  # where the linear spend met the balance
                    crossing = (settled * 3_600_000 + self.rate_start_sum[tenant]) / rate / 1000
                total.exhausted_at_s = min(now, crossing) - self.start_s

    # -- runs ----------------------------------------------------------------

    def start(
        self, job: Job, placement: Placement, node_type: Mapping[str, str], now: float
    ) -> None:
        uses = []
        for rp in placement:
            gpu_type = node_type[rp.node]
            milli = rp.gpu_milli * len(rp.gpu_indices)
            key = (job.tenant, gpu_type)
            self.held[key] = self.held.get(key, 0) + milli
            uses.append(
                ReplicaUse(
                    gpu_type=gpu_type,
                    gpu_milli=milli,
                    cpu_milli=rp.cpu_milli,
                    mem_mib=rp.mem_mib,
                    borrowed=self.held[key] > self.guarantee.get(key, 0),
                )
            )
        t_ms = to_ms(now)
        hourly = sum(self.card.hourly_micro(u, t_ms) for u in uses)
        run_s = job.estimate_s if job.estimate_s is not None else DEFAULT_RESERVE_S
        self.runs[job.id] = _Run(job.tenant, uses, t_ms, hourly, round(hourly * run_s / 3600))
        self.rate_sum[job.tenant] = self.rate_sum.get(job.tenant, 0) + hourly
        self.rate_start_sum[job.tenant] = self.rate_start_sum.get(job.tenant, 0.0) + hourly * t_ms

    def stop(self, job_id: str, now: float, *, lost_s: float = 0.0) -> None:
        """A run ends: charge it whole; refund what a preemption threw away (not a stop
        the tenant's own policy asked for)."""
        run = self.runs.pop(job_id)
        tenant = run.tenant
        end_ms = to_ms(now)
        self.rate_sum[tenant] -= run.hourly_micro
        self.rate_start_sum[tenant] -= run.hourly_micro * run.start_ms
        total = self.totals.setdefault(tenant, TenantCredits())
        refund_from = max(run.start_ms, end_ms - to_ms(lost_s))
        policy_stop = job_id in self.stopping
        self.stopping.discard(job_id)
        for u in run.uses:
            key = (tenant, u.gpu_type)
            self.held[key] -= u.gpu_milli
            amount = self.card.cost_micro(u, run.start_ms, end_ms)
            draws = draw(amount, [g.state for g in self.grants.get(tenant, [])], end_ms - 1)
            if tenant in self.limited:
                self._apply(tenant, draws, -1)
            total.charged_micro += amount
            total.gpu_hours += (end_ms - run.start_ms) / 3_600_000 * u.gpu_milli / GPU_MILLI
            if lost_s > 0 and not policy_stop:
                refund = self.card.interval_charge(u, run.start_ms, refund_from, end_ms)
                if tenant in self.limited:
                    self._apply(tenant, undo_draws(refund, draws), +1)
                total.refunded_micro += refund
                total.refunded_gpu_hours += (
                    (end_ms - refund_from) / 3_600_000 * u.gpu_milli / GPU_MILLI
                )

    def _apply(self, tenant: str, parts: Sequence[tuple[int | None, int]], sign: int) -> None:
        by_id = {g.state.id: g for g in self.grants.get(tenant, [])}
        for grant_id, amount in parts:
            if grant_id is None:
                # Drawn from no grant: an overdraft, kept on a grant-less line.
                overdraft = by_id.get(-1)
                if overdraft is None:
                    overdraft = _Grant(GrantState(-1, 0, 0, None, 10**9), "overdraft")
                    self.grants.setdefault(tenant, []).append(overdraft)
                    by_id[-1] = overdraft
                g = overdraft
            else:
                g = by_id[grant_id]
            g.state = dataclasses.replace(
                g.state, remaining_micro=g.state.remaining_micro + sign * amount
            )

    # -- policies --------------------------------------------------------------

    def gate(
        self,
        now: float,
        tenants: Sequence[Tenant],
        pending: Sequence[Job],
        running: Mapping[str, RunningJob],
    ) -> tuple[tuple[Tenant, ...], tuple[Job, ...]]:
        """The tenants and pending jobs the engine should see at ``now``."""
        t_ms = to_ms(now)
        reserved: dict[str, float] = {}
        for run in self.runs.values():
            if run.tenant in self.limited:
                spent = run.hourly_micro * (t_ms - run.start_ms) / 3_600_000
                reserved[run.tenant] = reserved.get(run.tenant, 0.0) + max(
                    0.0, run.reserve_micro - spent
                )
        available = {
            t: self.balance_micro(t, now) - reserved.get(t, 0.0) for t in sorted(self.limited)
        }
        out_tenants = []
        for t in tenants:
            policy = self.policies.get(t.name, CreditPolicy.HOLD)
            if policy == CreditPolicy.BEST_EFFORT and available.get(t.name, 1) <= 0:
                t = dataclasses.replace(
                    t, quotas=tuple((k, Quota(0, q.limit_milli)) for k, q in t.quotas)
                )
            out_tenants.append(t)
        held: set[str] = set()
        for t, left in available.items():
            if self.policies.get(t, CreditPolicy.HOLD) == CreditPolicy.BEST_EFFORT:
                continue
            queue = [(j.id, self._estimate(j, t_ms)) for j in pending if j.tenant == t]
            if queue:
                _admitted, blocked, _left = admit(int(left), queue)
                held.update(blocked)
        return tuple(out_tenants), tuple(j for j in pending if j.id not in held)

    def _estimate(self, job: Job, t_ms: int) -> int:
        gpu_type = job.gpu_types[0] if job.gpu_types else "*"
        use = ReplicaUse(gpu_type, job.shape.gpus * job.shape.gpu_milli, job.shape.cpu_milli)
        run_s = job.estimate_s if job.estimate_s is not None else DEFAULT_RESERVE_S
        return round(self.card.hourly_micro(use, t_ms) * job.replicas * run_s / 3600)

    def to_stop(self, now: float) -> list[str]:
        """Running jobs of ``stop`` tenants that ran out, to requeue now."""
        out = []
        for job_id, run in sorted(self.runs.items()):
            if job_id in self.stopping:
                continue
            stops = self.policies.get(run.tenant) == CreditPolicy.STOP
            if stops and run.tenant in self.limited and self.balance_micro(run.tenant, now) <= 0:
                self.stopping.add(job_id)
                out.append(job_id)
        return out

    def summary(self) -> dict[str, dict[str, float | int | str | None]]:
        return {
            t: {
                "granted": from_micro(v.granted_micro),
                "charged": from_micro(v.charged_micro),
                "refunded": from_micro(v.refunded_micro),
                "burned": from_micro(v.charged_micro - v.refunded_micro),
                "expired": from_micro(v.expired_micro),
                "gpu_hours": round(v.gpu_hours, 3),
                "refunded_gpu_hours": round(v.refunded_gpu_hours, 3),
                "ran_out_at_s": None if v.exhausted_at_s is None else round(v.exhausted_at_s, 1),
                "policy": self.policies.get(t, CreditPolicy.HOLD).value,
            }
            for t, v in sorted(self.totals.items())
        }


def rates_csv(lines: Iterable[Rate], origin_s: float) -> str:
    """``lines`` in the rates file's format, ``from_s`` on a trace clock whose 0 is the
    epoch second ``origin_s`` (a line in force before it has a negative ``from_s``)."""
    out = ["resource,per_hour,borrowed_per_hour,from_s"]
    for r in lines:
        extra = r.borrowed_micro_per_hour
        borrowed = "" if extra is None else from_micro(extra)
        out.append(
            f"{r.resource},{from_micro(r.micro_per_hour)},{borrowed},"
            f"{round(r.effective_ms / 1000 - origin_s, 3)}"
        )
    return "\n".join(out) + "\n"


def metering_book(card: RateCard, tenants: Sequence[Tenant]) -> CreditBook:
    """A book that charges every run at ``card`` and holds nobody: no tenant has a
    grant, so no policy acts and the replay's decisions are those without credits."""
    return CreditBook(card, {}, {}, tenants, 0.0)


def book_from_files(
    rates: Path, grants: Path, tenants: Sequence[Tenant], start_s: float
) -> CreditBook:
    card = load_rates(rates, start_s)
    by_tenant, policies = load_grants(grants, start_s)
    return CreditBook(card, by_tenant, policies, tenants, start_s)
