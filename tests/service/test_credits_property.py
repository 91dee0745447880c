"""The ledger against an independent model: for random sequences of grants, rate changes,
starts, stops and preemptions (with and without checkpoints), meterings that crash
before their commit and restarts, every tenant's charges, refunds and balance equal what
the usage records say, to the micro-credit, and no interval is charged twice."""

from __future__ import annotations

import itertools
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mosu.core.credits import MICRO
from mosu.core.reasons import StopReason
from mosu.service.db.credit_rows import (
    CreditEntryRow,
    CreditGrantRow,
    CreditIntervalRow,
    CreditRateRow,
)
from mosu.service.db.rows import AllocationRow, Base, JobRow, NodeRow, QuotaRow, TenantRow
from mosu.service.db.session import make_engine, session_factory
from mosu.service.services.credits_meter import meter_running
from mosu.service.services.lifecycle import finish

TENANTS = ("a", "b")
TYPES = ("H800", "A100")
GUARANTEE_MILLI = {("a", "H800"): 2000, ("b", "A100"): 1000}
T0_MS = 1_800_000_000_000

ops = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.sampled_from(TENANTS), st.sampled_from(TYPES),
                  st.integers(1, 3), st.sampled_from([1000, 500]),
                  st.sampled_from([None, 0.0, 7.0, 60.0])),
        st.tuples(st.just("stop"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("meter")),
        st.tuples(st.just("crash")),
        st.tuples(st.just("restart")),
        st.tuples(st.just("grant"), st.sampled_from(TENANTS), st.integers(1, 50),
                  st.sampled_from([None, 30_000, 400_000])),
        st.tuples(st.just("rate"), st.sampled_from([*TYPES, "cpu"]), st.integers(0, 9000),
                  st.sampled_from([None, 0, 1000])),
        st.tuples(st.just("wait"), st.integers(1, 400_000)),
    ),
    max_size=40,
)  # fmt: skip


@dataclass
class Model:
    """What the test itself knows: rates over time, runs and their ends."""

    rates: dict[str, list[tuple[int, int, int | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    runs: dict[int, dict] = field(default_factory=dict)
    """allocation id → start, end, tenant, type, milli, cpu, borrowed, refund."""
    granted: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def rate_at(self, resource: str, t: int, borrowed: bool) -> int:
        found = 0
        for eff, rate, b in sorted(self.rates.get(resource, [])):
            if eff <= t:
                found = b if (borrowed and b is not None) else rate
        return found

    def cost(self, run: dict, a: int, b: int) -> Fraction:
        """Exact cost (micro-credits) of [a, b) milliseconds of a run."""
        edges = sorted(
            {a, b}
            | {
                e
                for res in (run["type"], "cpu")
                for e, _r, _b in self.rates.get(res, [])
                if a < e < b
            }
        )
        total = Fraction(0)
        for x, y in itertools.pairwise(edges):
            gpu = self.rate_at(run["type"], x, run["borrowed"])
            cpu = self.rate_at("cpu", x, False)
            per_hour = Fraction(run["milli"] * gpu, 1000) + Fraction(run["cpu"] * cpu, 1000)
            total += per_hour * Fraction(y - x, 3_600_000)
        return total


def _floor(f: Fraction) -> int:
    return f.numerator // f.denominator


def _fresh_store(path: Path):
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for t in TENANTS:
            s.add(TenantRow(name=t, weight=1.0, created_at=0))
        s.flush()
        for (t, g), milli in GUARANTEE_MILLI.items():
            s.add(QuotaRow(tenant=t, gpu_type=g, guaranteed_milli=milli))
        for g in TYPES:
            s.add(NodeRow(name=f"n-{g}", gpu_type=g, gpus=64, cpu_milli=10**6, created_at=0))
    return engine, sessions


SEQUENCE = [
    ("rate", "H800", 3600, 1000),
    ("rate", "cpu", 10, None),
    ("grant", "a", 5, 30_000),
    ("start", "a", "H800", 3, 1000, 7.0),  # above a's guarantee of 2: borrowed
    ("wait", 61_000),
    ("meter",),
    ("wait", 30_000),
    ("crash",),
    ("restart",),
    ("rate", "H800", 7200, None),
    ("wait", 12_345),
    ("stop", 0, True),  # preempted: 12.345 + 91 s, 7 s checkpoints
    ("start", "b", "A100", 1, 500, None),
    ("wait", 5_000),
    ("stop", 0, True),  # never checkpoints: all refunded
]


EXPIRED_BEFORE_REFUND = [
    ("start", "a", "H800", 1, 1000, None),
    ("rate", "H800", 754, None),
    ("grant", "a", 22, 30_000),
    ("meter",),
    ("wait", 325),
    ("meter",),
    ("wait", 47_225),
    ("stop", 0, True),  # refunds to a grant that expired 17 s before: expired again
]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(SEQUENCE)
@example(EXPIRED_BEFORE_REFUND)
@given(ops)
def test_the_ledger_equals_the_independent_computation(sequence):
    with tempfile.TemporaryDirectory() as tmp:
        _check(Path(tmp) / "mosu.db", sequence)


def test_the_worked_example_charges_borrowed_time_and_refunds_lost_work(tmp_path):
    charged, refunded = _check(tmp_path / "mosu.db", SEQUENCE)
    assert charged["a"] > 0 and charged["b"] > 0
    assert 0 < refunded["a"] < charged["a"]  # only the work since the last checkpoint
    assert refunded["b"] == charged["b"]  # no checkpoint: the whole run


def _check(path: Path, sequence) -> tuple[dict[str, int], dict[str, int]]:
    engine, sessions = _fresh_store(path)
    model = Model()
    now = T0_MS
    running: list[int] = []  # allocation ids
    job_of: dict[int, int] = {}

    def open_milli(tenant: str, gpu_type: str, upto: int) -> int:
        return sum(
            model.runs[a]["milli"]
            for a in running
            if model.runs[a]["tenant"] == tenant and model.runs[a]["type"] == gpu_type and a <= upto
        )

    def classify_unmetered(only: int | None = None) -> None:
        for a in running if only is None else [only]:
            run = model.runs[a]
            if run["borrowed"] is None:
                used = open_milli(run["tenant"], run["type"], a)
                run["borrowed"] = used > GUARANTEE_MILLI.get((run["tenant"], run["type"]), 0)

    def meter(crash: bool = False) -> None:
        if not any(model.rates.values()):
            return
        try:
            with sessions.begin() as s:
                meter_running(s, now=now / 1000)
                if crash:
                    raise RuntimeError("killed before the commit")
        except RuntimeError:
            return
        classify_unmetered()
        for a in running:
            model.runs[a]["metered_to"] = now

    for op in sequence:
        kind = op[0]
        if kind == "wait":
            now += op[1]
        elif kind == "start":
            _, tenant, gpu_type, gpus, milli, ckpt = op
            milli = milli if gpus == 1 else 1000  # a fractional share is of one GPU
            with sessions.begin() as s:
                job = JobRow(
                    tenant=tenant, name="j", kind="train", state="running", spec={},
                    gpus=gpus, gpu_milli=milli, cpu_milli=1000, submitted_at=now / 1000,
                    started_at=now / 1000, attempts=1, checkpoint_every_s=ckpt,
                )  # fmt: skip
                s.add(job)
                s.flush()
                alloc = AllocationRow(
                    job_id=job.id, attempt=1, replica=0, tenant=tenant, node=f"n-{gpu_type}",
                    gpu_type=gpu_type, gpu_indices=",".join(str(i) for i in range(gpus)),
                    gpu_milli=milli, cpu_milli=1000, allocated_at=now / 1000,
                )  # fmt: skip
                s.add(alloc)
                s.flush()
                a = alloc.id
                job_of[a] = job.id
            model.runs[a] = {
                "start": now, "end": None, "tenant": tenant, "type": gpu_type,
                "milli": gpus * milli, "cpu": 1000, "borrowed": None, "ckpt": ckpt,
                "preempted": False, "metered_to": None,
            }  # fmt: skip
            running.append(a)
        elif kind == "stop" and running:
            a = running[op[1] % len(running)]
            with sessions.begin() as s:
                job = s.get(JobRow, job_of[a])
                job.stop_reason = StopReason.PREEMPT if op[2] else None
                finish(s, job, exit_code=0, now=now / 1000)
            if any(model.rates.values()):
                classify_unmetered(only=a)
            running.remove(a)
            model.runs[a].update(end=now, preempted=op[2])
        elif kind == "meter":
            meter()
        elif kind == "crash":
            meter(crash=True)
        elif kind == "restart":
            engine.dispose()
            engine = make_engine(f"sqlite:///{path}")
            sessions = session_factory(engine)
        elif kind == "grant":
            _, tenant, amount, expires = op
            with sessions.begin() as s:
                g = CreditGrantRow(
                    tenant=tenant, amount_micro=amount * MICRO, effective_at=now / 1000,
                    expires_at=None if expires is None else (now + expires) / 1000,
                    priority=0, note="", created_at=now / 1000,
                )  # fmt: skip
                s.add(g)
                s.flush()
                s.add(CreditEntryRow(
                    tenant=tenant, kind="grant", amount_micro=amount * MICRO, at=now / 1000,
                    grant_id=g.id, key=f"grant:{g.id}", note="",
                ))  # fmt: skip
            model.granted[tenant] += amount * MICRO
        elif kind == "rate":
            _, resource, per_hour, borrowed = op
            now += 1  # one rate per resource and moment
            with sessions.begin() as s:
                s.add(CreditRateRow(
                    resource=resource, effective_at=now / 1000, micro_per_hour=per_hour * 1000,
                    borrowed_micro_per_hour=None if borrowed is None else borrowed * 1000,
                    created_at=now / 1000,
                ))  # fmt: skip
            model.rates[resource].append(
                (now, per_hour * 1000, None if borrowed is None else borrowed * 1000)
            )
    meter()

    with sessions() as s:
        intervals = list(s.scalars(select(CreditIntervalRow)))
        entries = list(s.scalars(select(CreditEntryRow)))
    engine.dispose()

    # No interval charged twice: each replica's intervals tile its run without overlap.
    by_alloc: dict[int, list[CreditIntervalRow]] = defaultdict(list)
    for i in intervals:
        by_alloc[i.allocation_id].append(i)
    for a, its in by_alloc.items():
        its.sort(key=lambda i: i.start_ms)
        assert its[0].start_ms == model.runs[a]["start"]
        for x, y in itertools.pairwise(its):
            assert x.end_ms == y.start_ms
        assert len({i.borrowed for i in its}) == 1

    charged: dict[str, int] = defaultdict(int)
    refunded: dict[str, int] = defaultdict(int)
    for a, run in model.runs.items():
        end = run["end"] if run["end"] is not None else run["metered_to"]
        if end is None or run["borrowed"] is None or a not in by_alloc:
            assert a not in by_alloc
            if end is not None and run["borrowed"] is not None:  # nothing in force yet
                assert model.cost({**run}, run["start"], end) == 0 or end == run["start"]
            continue
        assert by_alloc[a][0].borrowed == run["borrowed"]
        assert by_alloc[a][-1].end_ms == end
        charged[run["tenant"]] += _floor(model.cost(run, run["start"], end))
        if run["preempted"] and run["end"] is not None:
            ran_s = (run["end"] - run["start"]) / 1000
            every = run["ckpt"]
            lost_s = ran_s if every is None else (0.0 if every <= 0 else ran_s % every)
            lost_from = max(run["start"], run["end"] - round(lost_s * 1000))
            refunded[run["tenant"]] += _floor(model.cost(run, run["start"], end)) - _floor(
                model.cost(run, run["start"], lost_from)
            )

    ledger: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in entries:
        ledger[e.tenant][e.kind] += e.amount_micro
    for t in TENANTS:
        assert -ledger[t]["charge"] == charged[t]
        assert ledger[t]["refund"] == refunded[t]
        assert ledger[t]["grant"] == model.granted[t]
        balance = sum(ledger[t].values())
        assert balance == model.granted[t] - charged[t] + refunded[t] + ledger[t]["expiry"]
    # Every charge is its interval's amount, split over grants without overdrawing one:
    # a grant's entries in the order of their times never take it below zero (an expiry
    # is of what was left at its time, whatever a later refund returns).
    per_interval: dict[tuple[int, int], int] = defaultdict(int)
    per_grant: dict[int, list[CreditEntryRow]] = defaultdict(list)
    for e in entries:
        if e.kind == "charge":
            per_interval[(e.allocation_id, e.interval_start_ms)] -= e.amount_micro
        if e.grant_id is not None:
            per_grant[e.grant_id].append(e)
    assert per_interval == {
        (i.allocation_id, i.start_ms): i.amount_micro for i in intervals if i.amount_micro > 0
    }
    for grant_entries in per_grant.values():
        left = 0
        for e in sorted(grant_entries, key=lambda e: (e.at, e.id)):
            left += e.amount_micro
            assert left >= 0, (e.kind, e.at, left)
        assert left >= 0
    return dict(charged), dict(refunded)
