"""Synthetic incubator workloads: calibration to Acme, tenants, determinism."""

from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mosu.core.models import GPU_MILLI, JobKind
from mosu.traces import native, synthetic

ACME = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "acme"


@pytest.fixture(scope="module")
def default_workload():
    return synthetic.generate(7)


def job_gpus(jobs) -> np.ndarray:
    return np.array([j.shape.gpus * j.replicas for j in jobs])


def run_times(jobs) -> np.ndarray:
    return np.array([j.duration_s for j in jobs])


@pytest.mark.skipif(not (ACME / "cluster_summary.csv").exists(), reason=f"{ACME} absent")
def test_constants_are_the_published_acme_numbers():
    with open(ACME / "cluster_summary.csv", newline="") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    seren, kalos = rows["Seren"], rows["Kalos"]
    assert float(seren["med_run_time_gpu"]) == synthetic.SEREN_MEDIAN_RUN_S
    assert float(seren["avg_run_time_gpu"]) == synthetic.SEREN_MEAN_RUN_S
    assert float(seren["max_run_time_gpu"]) == synthetic.SEREN_MAX_RUN_S
    assert float(seren["med_gpu_num"]) == synthetic.SEREN_MEDIAN_GPUS
    assert float(seren["avg_gpu_num"]) == synthetic.SEREN_MEAN_GPUS
    assert float(seren["max_gpu"]) == synthetic.SEREN_MAX_GPUS
    assert int(seren["gpu_job_num"]) == synthetic.SEREN_GPU_JOBS
    gpu_time = sum(float(seren[f"{s}_gpu_time"]) for s in ("complete", "cancel", "fail"))
    assert gpu_time == synthetic.SEREN_GPU_TIME_S
    assert float(kalos["avg_gpu_num"]) == synthetic.KALOS_MEAN_GPUS
    assert float(kalos["med_run_time_gpu"]) == synthetic.KALOS_MEDIAN_RUN_S
    assert float(kalos["avg_run_time_gpu"]) == synthetic.KALOS_MEAN_RUN_S
    assert float(kalos["max_run_time_gpu"]) == synthetic.KALOS_MAX_RUN_S
    assert float(kalos["med_gpu_num"]) == synthetic.KALOS_MEDIAN_GPUS
    assert float(kalos["max_gpu"]) == synthetic.KALOS_MAX_GPUS
    assert int(kalos["gpu_job_num"]) == synthetic.KALOS_GPU_JOBS
    gpu_time = sum(float(kalos[f"{s}_gpu_time"]) for s in ("complete", "cancel", "fail"))
    assert gpu_time == synthetic.KALOS_GPU_TIME_S


def test_job_mix_meets_the_seren_targets():
    got = synthetic.job_mix_statistics()
    assert got["median_run_s"] == pytest.approx(synthetic.SEREN_MEDIAN_RUN_S, rel=0.02)
    assert got["mean_run_s"] == pytest.approx(synthetic.SEREN_MEAN_RUN_S, rel=0.05)
    assert got["median_gpus"] == synthetic.SEREN_MEDIAN_GPUS
    assert got["mean_gpus"] == pytest.approx(synthetic.SEREN_MEAN_GPUS, rel=0.05)
    assert got["max_gpus"] == synthetic.SEREN_MAX_GPUS
    assert got["mean_gpu_s"] == pytest.approx(synthetic.SEREN_MEAN_GPU_S, rel=0.05)


def test_kind_shares_sum_to_one_and_size_distributions_are_proper():
    assert sum(k.share for k in synthetic.JOB_MIX) == pytest.approx(1.0)
    for spec in synthetic.JOB_MIX:
        assert sum(p for _, p in spec.gpus) == pytest.approx(1.0), spec.name
    assert {k.kind for k in synthetic.JOB_MIX} == set(JobKind)


def test_generated_jobs_follow_the_mix(default_workload):
    _, jobs = default_workload
    want = synthetic.job_mix_statistics()
    runs, gpus = run_times(jobs), job_gpus(jobs)
    # ~17,000 draws: medians are tight; means of these heavy tails are not.
    assert np.median(runs) == pytest.approx(want["median_run_s"], rel=0.05)
    assert np.median(gpus) == want["median_gpus"]
    assert gpus.mean() == pytest.approx(want["mean_gpus"], rel=0.15)
    assert runs.mean() == pytest.approx(want["mean_run_s"], rel=0.15)
    assert runs.min() >= synthetic.MIN_RUN_S
    assert runs.max() <= synthetic.MAX_RUN_S
    shares = Counter(j.kind for j in jobs)
    for spec in synthetic.JOB_MIX:
        assert shares[spec.kind] / len(jobs) == pytest.approx(spec.share, abs=0.01), spec.name


def test_offered_load_is_near_the_requested_load(default_workload):
    _, jobs = default_workload
    load = synthetic.offered_load(jobs, gpus=1024, span_s=7 * 86_400)
    assert 0.6 < load < 1.2


def test_tenants_split_the_cluster_by_zipf_size(default_workload):
    tenants, _ = default_workload
    assert len(tenants) == 120
    guaranteed = [t.quota("A100").guaranteed_milli // GPU_MILLI for t in tenants]
    assert sum(guaranteed) == 1024
    assert guaranteed == sorted(guaranteed, reverse=True)
    assert guaranteed[0] / guaranteed[9] == pytest.approx(10**1.1, rel=0.05)
    for tenant in tenants:
        quota = tenant.quota("A100")
        assert quota.limit_milli is not None
        assert quota.limit_milli >= max(quota.guaranteed_milli, 8 * GPU_MILLI)
        assert tenant.weight == 1.0
    nodes = native.default_cluster(tenants)
    assert sum(n.gpus for n in nodes) == 1024


def test_every_job_fits_its_tenants_limit_and_is_whole_nodes(default_workload):
    tenants, jobs = default_workload
    limits = {t.name: t.quota("A100").limit_milli for t in tenants}
    for job in jobs:
        assert job.shape.total_gpu_milli * job.replicas <= limits[job.tenant]
        assert job.replicas == 1 or job.shape.gpus == 8
        assert job.gpu_types == ("A100",)
    submits = [j.submit_s for j in jobs]
    assert submits == sorted(submits)
    assert submits[0] >= 0 and submits[-1] < 7 * 86_400
    assert len({j.id for j in jobs}) == len(jobs)
    # The largest gangs go to the few companies whose limit can hold them.
    big_owners = {j.tenant for j in jobs if j.shape.gpus * j.replicas >= 256}
    assert big_owners and big_owners <= {"co-001", "co-002", "co-003"}


def test_arrivals_follow_the_day(default_workload):
    _, jobs = default_workload
    hours = Counter(int(j.submit_s % 86_400 // 3600) for j in jobs)
    afternoon = sum(hours[h] for h in range(13, 18))
    night = sum(hours[h] for h in range(1, 6))
    assert afternoon > 2 * night


def test_same_seed_same_workload_and_other_seeds_differ():
    first = synthetic.generate(3, companies=20, days=1.0, gpus=64)
    again = synthetic.generate(3, companies=20, days=1.0, gpus=64)
    other = synthetic.generate(4, companies=20, days=1.0, gpus=64)
    assert first == again
    assert first[1] != other[1]


def test_estimates_are_noisy_run_times_when_asked():
    _, without = synthetic.generate(5, companies=10, days=0.5, gpus=64)
    _, jobs = synthetic.generate(5, companies=10, days=0.5, gpus=64, estimate_error=0.5)
    assert all(j.estimate_s is None for j in without)
    ratios = np.log([j.estimate_s / j.duration_s for j in jobs])
    assert abs(ratios.mean()) < 0.1
    assert ratios.std() == pytest.approx(0.5, rel=0.2)


def test_no_limits_lets_any_company_run_any_job():
    tenants, jobs = synthetic.generate(2, companies=30, gpus=256, days=2.0, limit_factor=None)
    assert all(t.quota("A100").limit_milli is None for t in tenants)
    assert max(job_gpus(jobs)) <= 256


def test_a_small_cluster_shrinks_gangs_to_the_largest_limit():
    tenants, jobs = synthetic.generate(1, companies=5, gpus=32, days=3.0)
    largest = max(t.quota("A100").limit_milli for t in tenants) // GPU_MILLI
    assert max(job_gpus(jobs)) <= largest


def test_workload_survives_the_native_format(tmp_path):
    tenants, jobs = synthetic.generate(9, companies=8, days=0.25, gpus=64, estimate_error=0.3)
    native.write_jobs(tmp_path / "jobs.csv", jobs)
    native.write_tenants(tmp_path / "tenants.csv", tenants)
    assert native.load_jobs(tmp_path / "jobs.csv") == jobs
    assert native.load_tenants(tmp_path / "tenants.csv") == tenants


@pytest.mark.parametrize(
    "kwargs",
    [{"companies": 0}, {"gpus": 0}, {"days": 0}, {"gpus_per_node": 6}, {"diurnal_amplitude": 2}],
)
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        synthetic.generate(0, **kwargs)


def test_seren_output_is_unchanged_byte_for_byte(tmp_path):
    # Digests of the native files of this workload as first published; a change
    # here changes every recorded Seren measurement.
    tenants, jobs = synthetic.generate(3, companies=20, days=1.0, gpus=64, estimate_error=0.5)
    native.write_jobs(tmp_path / "jobs.csv", jobs)
    native.write_tenants(tmp_path / "tenants.csv", tenants)
    digest = {
        n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest()[:16]
        for n in ("jobs.csv", "tenants.csv")
    }
    assert digest == {"jobs.csv": "0ff151c0bec73109", "tenants.csv": "c362b149a7c8a3c6"}


# --- the Kalos-shaped mixture ---------------------------------------------------


def test_kalos_mix_meets_the_kalos_targets():
    got = synthetic.job_mix_statistics(synthetic.KALOS_JOB_MIX, max_run_s=synthetic.KALOS_MAX_RUN_S)
    assert got["median_run_s"] == pytest.approx(synthetic.KALOS_MEDIAN_RUN_S, rel=0.03)
    assert got["mean_run_s"] == pytest.approx(synthetic.KALOS_MEAN_RUN_S, rel=0.03)
    assert got["median_gpus"] == synthetic.KALOS_MEDIAN_GPUS
    assert got["mean_gpus"] == pytest.approx(synthetic.KALOS_MEAN_GPUS, rel=0.01)
    assert got["max_gpus"] == synthetic.KALOS_MAX_GPUS
    assert got["mean_gpu_s"] == pytest.approx(synthetic.KALOS_MEAN_GPU_S, rel=0.01)
    for spec in synthetic.KALOS_JOB_MIX:
        assert sum(p for _, p in spec.gpus) == pytest.approx(1.0), spec.name
    assert sum(k.share for k in synthetic.KALOS_JOB_MIX) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def kalos_weeks():
    return {load: synthetic.generate_kalos(11, load=load) for load in (0.7, 0.9, 1.1)}


@pytest.mark.parametrize("load", [0.7, 0.9, 1.1])
def test_kalos_offered_load_is_the_requested_load_for_every_seed(kalos_weeks, load):
    _, jobs = kalos_weeks[load]
    assert synthetic.offered_load(jobs, gpus=1024, span_s=7 * 86_400) == pytest.approx(
        load, rel=0.01
    )


def test_kalos_sample_follows_its_mix(kalos_weeks):
    _, jobs = kalos_weeks[0.9]
    want = synthetic.job_mix_statistics(
        synthetic.KALOS_JOB_MIX, max_run_s=synthetic.KALOS_MAX_RUN_S
    )
    runs, gpus = run_times(jobs), job_gpus(jobs)
    # ~2,000 draws of which ~140 pretraining gangs: medians are tight, the mean GPU
    # count (carried by a few 512- and 1,024-GPU gangs) much less so.
    assert len(jobs) == round(0.9 * 1024 * 7 * 86_400 / want["mean_gpu_s"])
    assert np.median(runs) == pytest.approx(synthetic.KALOS_MEDIAN_RUN_S, rel=0.15)
    assert np.median(gpus) == synthetic.KALOS_MEDIAN_GPUS
    assert gpus.mean() == pytest.approx(synthetic.KALOS_MEAN_GPUS, rel=0.25)
    assert (gpus * runs).mean() == pytest.approx(synthetic.KALOS_MEAN_GPU_S, rel=0.05)
    assert gpus.max() == synthetic.KALOS_MAX_GPUS
    assert runs.min() >= synthetic.MIN_RUN_S and runs.max() <= synthetic.KALOS_MAX_RUN_S
    shares = Counter(j.kind for j in jobs)
    for spec in synthetic.KALOS_JOB_MIX:
        assert shares[spec.kind] / len(jobs) == pytest.approx(spec.share, abs=0.02), spec.name


def test_kalos_labs_hold_large_guarantees_and_submit_in_proportion(kalos_weeks):
    tenants, jobs = kalos_weeks[0.9]
    quotas = {t.name: t.quota("A100") for t in tenants}
    assert {n: q.guaranteed_milli // GPU_MILLI for n, q in quotas.items()} == {
        "lab-a": 512,
        "lab-b": 256,
        "lab-c": 256,
    }
    assert all(q.limit_milli == 1024 * GPU_MILLI for q in quotas.values())
    owners = Counter(j.tenant for j in jobs)
    assert owners["lab-a"] / len(jobs) == pytest.approx(0.5, abs=0.04)
    assert owners["lab-b"] / len(jobs) == pytest.approx(0.25, abs=0.04)
    for j in jobs:
        total = j.shape.gpus * j.replicas
        assert total <= 8 or (j.shape.gpus == 8 and j.replicas == total // 8)


def test_kalos_training_jobs_declare_realistic_checkpoint_intervals(kalos_weeks):
    _, jobs = kalos_weeks[0.9]
    pretrain = [j.checkpoint_every_s for j in jobs if j.kind == JobKind.TRAIN]
    finetune = [j.checkpoint_every_s for j in jobs if j.kind == JobKind.FINETUNE]
    others = [j.checkpoint_every_s for j in jobs if j.kind not in (JobKind.TRAIN, JobKind.FINETUNE)]
    assert set(pretrain) == set(synthetic.CHECKPOINT_CHOICES_S["pretrain"])
    assert min(pretrain) == 30 * 60 and max(pretrain) == 120 * 60
    assert set(finetune) <= set(synthetic.CHECKPOINT_CHOICES_S["finetune"])
    assert all(c is None for c in others)


def test_kalos_is_seeded_and_survives_the_native_format(tmp_path):
    first = synthetic.generate_kalos(4, days=1.0, gpus=256)
    assert first == synthetic.generate_kalos(4, days=1.0, gpus=256)
    assert first[1] != synthetic.generate_kalos(5, days=1.0, gpus=256)[1]
    tenants, jobs = first
    native.write_jobs(tmp_path / "jobs.csv", jobs)
    native.write_tenants(tmp_path / "tenants.csv", tenants)
    assert native.load_jobs(tmp_path / "jobs.csv") == jobs
    assert native.load_tenants(tmp_path / "tenants.csv") == tenants
    assert any(not math.isnan(j.checkpoint_every_s or math.nan) for j in jobs)


@pytest.mark.parametrize("kwargs", [{"gpus": 64}, {"days": 0}, {"gpus_per_node": 6}])
def test_kalos_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        synthetic.generate_kalos(0, **kwargs)
