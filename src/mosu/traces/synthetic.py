"""Seeded generator of synthetic incubator workloads, calibrated to Acme.

An incubator cluster hosts many companies of very different sizes, each
submitting a mix of pretraining, fine-tuning, evaluation, debugging, inference
and interactive work. No public trace has that shape with tenants attached, so
this module draws one, and matches the job-level statistics that the Acme
paper published (Hu et al., "Characterization of Large Language Model
Development in the Datacenter", NSDI'24; ``acme/cluster_summary.csv`` of
InternLM/AcmeTrace, CC BY 4.0), copied below as constants.

Calibration targets (Seren, GPU jobs):

- median run time 122 s, mean 1,414 s, max 1,209,604 s;
- median 1 GPU per job, mean 5.68, max 1,024;
- mean GPU time per job 32,400 GPU-s (all GPU time, 21.51e9 GPU-s, over
  663,813 GPU jobs).

Kalos agrees on the medians (124 s, 1 GPU, max 1,024 GPUs) but averages
26.8 GPUs and 268,000 GPU-s per job: it is a cluster of a few teams dominated by
large pretraining runs. An incubator of ~120 companies is closer to Seren's
many-job mix, so the default mixture targets Seren; ``generate_kalos`` (at the
end) draws the Kalos shape: three labs, large guarantees, gangs up to 1,024
GPUs. ``job_mix_statistics()`` gives a mixture's exact expected statistics;
tests check them against the targets and check generated samples against them.

Assumptions (every one is a modelling choice, not a published number):

1. **Companies**: ``companies`` tenants named ``co-001``... with sizes
   proportional to 1 / rank ** ``zipf_s`` (Zipf, default exponent 1.1). The
   third-party table of the Alibaba spot-GPU trace shows an even stronger skew
   (top 5 of 84 organisations hold 80 % of GPU-seconds).
2. **Quotas**: guarantees split ``guaranteed_fraction`` × ``gpus`` whole GPUs by
   size (largest remainder), so with the default 1.0 the guarantees exactly
   subscribe the cluster and ``native.default_cluster(tenants)`` rebuilds it.
   Limit = min(``gpus``, max(``gpus_per_node``, ceil(``limit_factor`` ×
   guarantee))) or none when ``limit_factor`` is None. Weight 1 for everyone.
3. **Job kinds** and their mapping to ``JobKind``: pretrain → TRAIN, finetune →
   FINETUNE, eval → EVAL, debug → BATCH (short, non-interactive test runs of a
   training script), inference → INFERENCE, dev → DEV (interactive sessions).
   The kind shares, size distributions and log-normal run times are in
   ``JOB_MIX``; they were tuned so that the mixture meets the targets above,
   with run times capped at Seren's maximum and floored at 1 s.
4. **Sizes**: whole GPUs, powers of two. A job above ``gpus_per_node`` GPUs (a
   power of two) is a gang of whole-node replicas; smaller jobs are one replica. No
   CPU or memory ask and no topology constraint. Every job runs on ``gpu_type``.
5. **Who submits what**: each job goes to a company whose limit can hold it,
   chosen with probability proportional to its activity = size ×
   lognormal(0, ``activity_sigma``), so some companies borrow while others
   lend. A job larger than every limit shrinks to the largest limit (rounded
   down to whole nodes).
6. **Volume**: the job count is ``load`` × ``gpus`` × span / (expected GPU-s
   per job), so ``load`` is the expected offered load before that shrinking.
   GPU time per job is heavy-tailed (a few long pretraining gangs carry most
   of it), so the realised load varies by seed: ``offered_load()`` measures it.
   Pretraining run times use a narrower log-normal (sigma 1.4) with a larger
   median rather than a wider one with the same mean, which keeps a week's
   offered load steady across seeds (about 0.86 ± 0.09 at the defaults over
   seeds 0-11, against 1.1 ± 0.3 with sigma 1.9).
7. **Arrivals**: a Poisson process over ``days`` days modulated by a daily
   sinusoid of relative amplitude ``diurnal_amplitude`` peaking at 15:00
   (time 0 is midnight).
8. **Estimates**: none by default; with ``estimate_error`` = σ, each job's
   estimate is its run time × lognormal(0, σ).
Queueing delays are outcomes of scheduling, so they are not calibrated.

Determinism: every draw comes from ``numpy.random.default_rng(seed)``; the same
seed and arguments give the same tenants and jobs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from mosu.core.models import GPU_MILLI, JobKind, Quota, Shape, Tenant
from mosu.traces.schema import TraceJob

# --- published Acme statistics (acme/cluster_summary.csv, GPU jobs) ----------
SEREN_MEDIAN_RUN_S = 122.0
SEREN_MEAN_RUN_S = 1414.335
SEREN_MAX_RUN_S = 1_209_604.0
SEREN_MEDIAN_GPUS = 1.0
SEREN_MEAN_GPUS = 5.68
SEREN_MAX_GPUS = 1024
SEREN_GPU_JOBS = 663_813
SEREN_GPU_TIME_S = 4_560_592_618.0 + 14_274_584_510.0 + 2_675_447_459.0
"""Completed + cancelled + failed GPU time, GPU-seconds."""
SEREN_MEAN_GPU_S = SEREN_GPU_TIME_S / SEREN_GPU_JOBS
KALOS_MEDIAN_RUN_S = 124.0
KALOS_MEAN_RUN_S = 1259.689
KALOS_MAX_RUN_S = 625_740.0
KALOS_MEDIAN_GPUS = 1.0
KALOS_MEAN_GPUS = 26.77
KALOS_MAX_GPUS = 1024
KALOS_GPU_JOBS = 19_907
KALOS_GPU_TIME_S = 1_667_685_146.0 + 3_239_202_064.0 + 426_292_851.0
"""Completed + cancelled + failed GPU time, GPU-seconds."""
KALOS_MEAN_GPU_S = KALOS_GPU_TIME_S / KALOS_GPU_JOBS


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One job kind: share of jobs, GPU-count distribution, log-normal run time."""

    name: str
    kind: JobKind
    share: float
    gpus: tuple[tuple[int, float], ...]
    """(GPUs, probability) pairs; probabilities sum to 1."""
    median_s: float
    sigma: float

    @property
    def mean_gpus(self) -> float:
        return sum(g * p for g, p in self.gpus)


JOB_MIX: tuple[KindSpec, ...] = (
    KindSpec("debug", JobKind.BATCH, 0.30, ((1, 0.85), (2, 0.05), (4, 0.04), (8, 0.06)), 30, 1.3),
    KindSpec("eval", JobKind.EVAL, 0.34, ((1, 0.80), (2, 0.06), (4, 0.06), (8, 0.08)), 90, 1.3),
    KindSpec("dev", JobKind.DEV, 0.10, ((1, 0.85), (2, 0.08), (4, 0.04), (8, 0.03)), 1000, 1.3),
    KindSpec(
        "finetune",
        JobKind.FINETUNE,
        0.17,
        ((1, 0.35), (2, 0.15), (4, 0.15), (8, 0.20), (16, 0.08), (32, 0.05), (64, 0.02)),
        500,
        1.6,
    ),
    KindSpec(
        "inference", JobKind.INFERENCE, 0.05, ((1, 0.6), (2, 0.15), (4, 0.1), (8, 0.15)), 2700, 1.5
    ),
    KindSpec(
        "pretrain",
        JobKind.TRAIN,
        0.04,
        (
            (8, 0.28),
            (16, 0.22),
            (32, 0.18),
            (64, 0.13),
            (128, 0.09),
            (256, 0.05),
            (512, 0.035),
            (1024, 0.015),
        ),
        3600,
        1.4,
    ),
)
MAX_RUN_S = SEREN_MAX_RUN_S
"""Run times are capped at the longest Seren GPU job."""
MIN_RUN_S = 1.0
"""And floored at one second, the shortest run a trace records."""


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _capped_lognormal_mean(median: float, sigma: float, cap: float) -> float:
    """E[min(X, cap)] for X log-normal with that median and sigma."""
    mu = math.log(median)
    z = (math.log(cap) - mu) / sigma
    return math.exp(mu + sigma * sigma / 2) * _phi(z - sigma) + cap * (1.0 - _phi(z))


def job_mix_statistics(
    mix: tuple[KindSpec, ...] = JOB_MIX, *, max_run_s: float = MAX_RUN_S
) -> dict[str, float]:
    """Exact expected statistics of a job mix (before per-tenant shrinking), run
    times capped at ``max_run_s``."""
    total = sum(k.share for k in mix)
    shares = [k.share / total for k in mix]
    mean_runs = [_capped_lognormal_mean(k.median_s, k.sigma, max_run_s) for k in mix]

    def run_cdf(x: float) -> float:
        return sum(
            s * _phi((math.log(x) - math.log(k.median_s)) / k.sigma)
            for s, k in zip(shares, mix, strict=True)
        )

    lo, hi = 1e-3, max_run_s
    for _ in range(200):  # bisection in log space
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if run_cdf(mid) < 0.5 else (lo, mid)
    gpu_cdf: dict[int, float] = {}
    for s, k in zip(shares, mix, strict=True):
        for g, p in k.gpus:
            gpu_cdf[g] = gpu_cdf.get(g, 0.0) + s * p
    acc, median_gpus = 0.0, 0
    for g in sorted(gpu_cdf):
        acc += gpu_cdf[g]
        if acc >= 0.5:
            median_gpus = g
            break
    return {
        "median_run_s": math.sqrt(lo * hi),
        "mean_run_s": sum(s * m for s, m in zip(shares, mean_runs, strict=True)),
        "median_gpus": float(median_gpus),
        "mean_gpus": sum(s * k.mean_gpus for s, k in zip(shares, mix, strict=True)),
        "max_gpus": float(max(g for k in mix for g, _ in k.gpus)),
        "mean_gpu_s": sum(
            s * k.mean_gpus * m for s, k, m in zip(shares, mix, mean_runs, strict=True)
        ),
    }


def offered_load(jobs: Iterable[TraceJob], *, gpus: int, span_s: float) -> float:
    """Submitted GPU-seconds over ``gpus`` × ``span_s``: how busy a workload would
    keep the cluster if every job ran exactly once."""
    work = sum(j.shape.total_gpu_milli * j.replicas * (j.duration_s or 0.0) for j in jobs)
    return work / GPU_MILLI / (gpus * span_s)


def _tenants(
    *,
    companies: int,
    gpus: int,
    gpu_type: str,
    zipf_s: float,
    guaranteed_fraction: float,
    limit_factor: float | None,
    gpus_per_node: int,
) -> tuple[list[Tenant], np.ndarray, np.ndarray]:
    """Tenants, each one's limit in GPUs (inf for none) and its size weight."""
    ranks = np.arange(1, companies + 1, dtype=float)
    sizes = ranks**-zipf_s
    sizes /= sizes.sum()
    pool = round(guaranteed_fraction * gpus)
    exact = sizes * pool
    whole = np.floor(exact).astype(int)
    leftover = pool - int(whole.sum())
    # Largest remainder; ties go to the larger (earlier) company.
    order = np.lexsort((ranks, -(exact - whole)))
    whole[order[:leftover]] += 1
    width = max(3, len(str(companies)))
    tenants: list[Tenant] = []
    limits = np.empty(companies)
    for i in range(companies):
        guaranteed = int(whole[i])
        if limit_factor is None:
            limit = None
            limits[i] = math.inf
        else:
            limit = min(gpus, max(gpus_per_node, math.ceil(limit_factor * guaranteed)))
            limits[i] = limit
        quota = Quota(
            guaranteed_milli=guaranteed * GPU_MILLI,
            limit_milli=None if limit is None else limit * GPU_MILLI,
        )
        tenants.append(Tenant(name=f"co-{i + 1:0{width}d}", quotas=((gpu_type, quota),)))
    return tenants, limits, sizes


def _arrivals(rng: np.random.Generator, n: int, span_s: float, amplitude: float) -> np.ndarray:
    """n arrival times of a daily-modulated Poisson process over [0, span), sorted."""
    peak_s = 15 * 3600.0
    out: list[np.ndarray] = []
    need = n
    while need > 0:
        t = rng.uniform(0.0, span_s, size=max(2 * need, 64))
        rate = 1.0 + amplitude * np.cos(2 * math.pi * (t - peak_s) / 86_400.0)
        keep = t[rng.uniform(0.0, 1.0 + amplitude, size=t.size) < rate][:need]
        out.append(keep)
        need -= keep.size
    return np.sort(np.concatenate(out)) if out else np.empty(0)


def generate(
    seed: int,
    *,
    companies: int = 120,
    days: float = 7.0,
    gpus: int = 1024,
    load: float = 0.9,
    gpu_type: str = "A100",
    gpus_per_node: int = 8,
    zipf_s: float = 1.1,
    guaranteed_fraction: float = 1.0,
    limit_factor: float | None = 4.0,
    activity_sigma: float = 0.5,
    diurnal_amplitude: float = 0.5,
    estimate_error: float | None = None,
) -> tuple[list[Tenant], list[TraceJob]]:
    """Tenants and jobs of a synthetic incubator; see the module docstring.

    Jobs are sorted by submit time and named ``syn-NNNNNN`` in that order.
    """
    if companies < 1 or gpus < 1 or days <= 0 or load <= 0:
        raise ValueError("companies, gpus, days and load must be positive")
    if gpus_per_node < 1 or gpus_per_node & (gpus_per_node - 1):
        raise ValueError(f"gpus_per_node must be a power of two, got {gpus_per_node}")
    if not 0.0 <= diurnal_amplitude <= 1.0:
        raise ValueError("diurnal_amplitude must be in [0, 1]")
    rng = np.random.default_rng(seed)
    tenants, limits, sizes = _tenants(
        companies=companies,
        gpus=gpus,
        gpu_type=gpu_type,
        zipf_s=zipf_s,
        guaranteed_fraction=guaranteed_fraction,
        limit_factor=limit_factor,
        gpus_per_node=gpus_per_node,
    )
    activity = sizes * rng.lognormal(0.0, activity_sigma, size=companies)

    span_s = days * 86_400.0
    stats = job_mix_statistics()
    n = round(load * gpus * span_s / stats["mean_gpu_s"])
    shares = np.array([k.share for k in JOB_MIX])
    kinds = rng.choice(len(JOB_MIX), size=n, p=shares / shares.sum())
    job_gpus = np.empty(n, dtype=np.int64)
    runs = np.empty(n)
    for i, spec in enumerate(JOB_MIX):
        mask = kinds == i
        count = int(mask.sum())
        values = np.array([g for g, _ in spec.gpus])
        probs = np.array([p for _, p in spec.gpus])
        job_gpus[mask] = rng.choice(values, size=count, p=probs / probs.sum())
        runs[mask] = rng.lognormal(math.log(spec.median_s), spec.sigma, size=count)
    runs = np.clip(runs, MIN_RUN_S, MAX_RUN_S)

    largest = min(float(limits.max()), float(gpus))
    if largest >= gpus_per_node:
        largest = math.floor(largest / gpus_per_node) * gpus_per_node
    job_gpus = np.minimum(job_gpus, int(largest))

    owners = np.empty(n, dtype=np.int64)
    for size in np.unique(job_gpus):
        mask = job_gpus == size
        weights = np.where(limits >= size, activity, 0.0)
        owners[mask] = rng.choice(companies, size=int(mask.sum()), p=weights / weights.sum())

    submits = _arrivals(rng, n, span_s, diurnal_amplitude)
    estimates = None
    if estimate_error is not None:
        estimates = runs * rng.lognormal(0.0, estimate_error, size=n)

    width = max(6, len(str(n)))
    jobs: list[TraceJob] = []
    for j in range(n):
        total = int(job_gpus[j])
        if total > gpus_per_node:
            replicas, per_replica = total // gpus_per_node, gpus_per_node
        else:
            replicas, per_replica = 1, total
        jobs.append(
            TraceJob(
                id=f"syn-{j:0{width}d}",
                tenant=tenants[int(owners[j])].name,
                submit_s=round(float(submits[j]), 3),
                duration_s=round(float(runs[j]), 3),
                shape=Shape(gpus=per_replica),
                replicas=replicas,
                gpu_types=(gpu_type,),
                kind=JOB_MIX[int(kinds[j])].kind,
                estimate_s=None if estimates is None else round(float(estimates[j]), 3),
            )
        )
    return tenants, jobs


# --- the Kalos-shaped mixture: a few labs sharing large pretraining gangs ------

KALOS_JOB_MIX: tuple[KindSpec, ...] = (
    KindSpec("debug", JobKind.BATCH, 0.41, ((1, 0.80), (2, 0.05), (4, 0.05), (8, 0.10)), 40, 1.4),
    KindSpec("eval", JobKind.EVAL, 0.38, ((1, 0.75), (2, 0.08), (4, 0.07), (8, 0.10)), 150, 1.3),
    KindSpec(
        "finetune",
        JobKind.FINETUNE,
        0.14,
        ((8, 0.35), (16, 0.25), (32, 0.20), (64, 0.12), (128, 0.08)),
        700,
        1.3,
    ),
    KindSpec(
        "pretrain",
        JobKind.TRAIN,
        0.07,
        ((64, 0.25), (128, 0.25), (256, 0.22), (512, 0.18), (1024, 0.10)),
        6100,
        1.2,
    ),
)
"""Kalos's GPU jobs (see ``generate_kalos``); ``job_mix_statistics(KALOS_JOB_MIX,
max_run_s=KALOS_MAX_RUN_S)`` meets the Kalos targets within 3 %."""
KALOS_LABS: tuple[tuple[str, float], ...] = (("lab-a", 0.5), ("lab-b", 0.25), ("lab-c", 0.25))
"""Tenants of the Kalos-shaped workload and their share of the cluster as guarantee."""
CHECKPOINT_CHOICES_S: dict[str, tuple[float, ...]] = {
    "pretrain": (1800.0, 2700.0, 3600.0, 5400.0, 7200.0),
    "finetune": (600.0, 900.0, 1200.0, 1800.0),
}
"""Checkpoint intervals a job of each kind draws from, uniformly; kinds not named
here declare none and the replay's default applies."""


def generate_kalos(
    seed: int,
    *,
    days: float = 7.0,
    gpus: int = 1024,
    load: float = 0.9,
    gpu_type: str = "A100",
    gpus_per_node: int = 8,
    diurnal_amplitude: float = 0.5,
    estimate_error: float | None = None,
) -> tuple[list[Tenant], list[TraceJob]]:
    """Tenants and jobs of a Kalos-shaped cluster: three labs guaranteed 1/2, 1/4
    and 1/4 of ``gpus`` (limit: the whole cluster), jobs drawn from
    ``KALOS_JOB_MIX`` (run times in [1 s, Kalos's 625,740 s]), each owned by a lab
    with probability ∝ its guarantee, and pretraining and fine-tuning jobs
    declaring ``checkpoint_every_s`` from ``CHECKPOINT_CHOICES_S``.

    Sizes, gangs, arrivals and estimates follow ``generate`` (assumptions 4, 7 and
    8 of the module docstring); the job count too (6), but then the pretraining
    run times are scaled by one factor so that the offered load is ``load`` for
    every seed, not only in expectation. Jobs are named ``kal-NNNNNN``.
    """
    if gpus < 1 or days <= 0 or load <= 0:
        raise ValueError("gpus, days and load must be positive")
    if gpus_per_node < 1 or gpus_per_node & (gpus_per_node - 1):
        raise ValueError(f"gpus_per_node must be a power of two, got {gpus_per_node}")
    if gpus < gpus_per_node * len(KALOS_LABS) * 4:
        raise ValueError(f"gpus must be at least {gpus_per_node * len(KALOS_LABS) * 4}")
    if not 0.0 <= diurnal_amplitude <= 1.0:
        raise ValueError("diurnal_amplitude must be in [0, 1]")
    rng = np.random.default_rng(seed)
    guaranteed = [round(share * gpus) for _, share in KALOS_LABS]
    guaranteed[0] += gpus - sum(guaranteed)
    tenants = [
        Tenant(
            name=name,
            quotas=(
                (gpu_type, Quota(guaranteed_milli=g * GPU_MILLI, limit_milli=gpus * GPU_MILLI)),
            ),
        )
        for (name, _), g in zip(KALOS_LABS, guaranteed, strict=True)
    ]
    span_s = days * 86_400.0
    mix = KALOS_JOB_MIX
    stats = job_mix_statistics(mix, max_run_s=KALOS_MAX_RUN_S)
    n = round(load * gpus * span_s / stats["mean_gpu_s"])
    shares = np.array([k.share for k in mix])
    kinds = rng.choice(len(mix), size=n, p=shares / shares.sum())
    job_gpus = np.empty(n, dtype=np.int64)
    runs = np.empty(n)
    checkpoints = np.full(n, np.nan)
    for i, spec in enumerate(mix):
        mask = kinds == i
        count = int(mask.sum())
        values = np.array([g for g, _ in spec.gpus])
        probs = np.array([p for _, p in spec.gpus])
        job_gpus[mask] = rng.choice(values, size=count, p=probs / probs.sum())
        runs[mask] = rng.lognormal(math.log(spec.median_s), spec.sigma, size=count)
        choices = CHECKPOINT_CHOICES_S.get(spec.name)
        if choices:
            checkpoints[mask] = rng.choice(np.array(choices), size=count)
    runs = np.clip(runs, MIN_RUN_S, KALOS_MAX_RUN_S)
    job_gpus = np.minimum(job_gpus, gpus // gpus_per_node * gpus_per_node)
    # A week holds ~140 pretraining gangs of up to 1,024 GPUs carrying ~97 % of
    # the GPU time, so the submitted GPU time swings by tens of percent between
    # seeds; one factor on the pretraining run times makes the offered load
    # ``load`` for any seed (up to the cap), leaving every other kind as drawn.
    pretrain = kinds == next(i for i, k in enumerate(mix) if k.name == "pretrain")
    rest = float(np.sum(job_gpus[~pretrain] * runs[~pretrain]))
    ours = float(np.sum(job_gpus[pretrain] * runs[pretrain]))
    target = load * gpus * span_s
    if ours > 0 and target > rest:
        runs[pretrain] = np.clip(
            runs[pretrain] * ((target - rest) / ours), MIN_RUN_S, KALOS_MAX_RUN_S
        )
    weights = np.array(guaranteed, dtype=float)
    owners = rng.choice(len(tenants), size=n, p=weights / weights.sum())
    submits = _arrivals(rng, n, span_s, diurnal_amplitude)
    estimates = None
    if estimate_error is not None:
        estimates = runs * rng.lognormal(0.0, estimate_error, size=n)

    width = max(6, len(str(n)))
    jobs: list[TraceJob] = []
    for j in range(n):
        total = int(job_gpus[j])
        if total > gpus_per_node:
            replicas, per_replica = total // gpus_per_node, gpus_per_node
        else:
            replicas, per_replica = 1, total
        ckpt = float(checkpoints[j])
        jobs.append(
            TraceJob(
                id=f"kal-{j:0{width}d}",
                tenant=tenants[int(owners[j])].name,
                submit_s=round(float(submits[j]), 3),
                duration_s=round(float(runs[j]), 3),
                shape=Shape(gpus=per_replica),
                replicas=replicas,
                gpu_types=(gpu_type,),
                kind=mix[int(kinds[j])].kind,
                estimate_s=None if estimates is None else round(float(estimates[j]), 3),
                checkpoint_every_s=None if math.isnan(ckpt) else ckpt,
            )
        )
    return tenants, jobs
