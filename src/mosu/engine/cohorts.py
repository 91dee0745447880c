"""Cohorts: whose idle guarantee a borrower may run on.

Tenants of one cohort lend each other the part of their guarantees they leave
idle; tenants without a cohort form one default cohort together. Capacity
guaranteed to nobody is lendable to every cohort. So, per GPU type, what all
cohorts together hold above their members' summed guarantees must fit in the
unguaranteed capacity: no new borrowing runs on another cohort's idle guarantee.

Only new borrowing is checked. A tenant using its own guarantee is never held
back by its cohort; if that leaves an earlier borrower of its cohort on capacity
that is no longer lendable, that borrower is reclaimable when its lender asks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from mosu.core.models import Tenant

DEFAULT_COHORT = ""


def cohort_of(tenant: Tenant) -> str:
    """The tenant's cohort; ``DEFAULT_COHORT`` for one without a cohort."""
    return tenant.cohort or DEFAULT_COHORT


class CohortBook:
    """Per cohort and GPU type: summed guarantees and current usage (milli)."""

    def __init__(
        self,
        tenants: Iterable[Tenant],
        capacity: Mapping[str, int],
        usage: Mapping[tuple[str, str], int],
        guarantee: Callable[[str, str], int],
    ) -> None:
        self.cohort_by_tenant = {t.name: cohort_of(t) for t in tenants}
        self.guaranteed: dict[tuple[str, str], int] = {}
        self.used: dict[tuple[str, str], int] = {}
        self.spare: dict[str, int] = dict(capacity)
        for name, cohort in self.cohort_by_tenant.items():
            for gpu_type in capacity:
                g = guarantee(name, gpu_type)
                key = (cohort, gpu_type)
                self.guaranteed[key] = self.guaranteed.get(key, 0) + g
                self.spare[gpu_type] -= g
        for gpu_type in self.spare:
            self.spare[gpu_type] = max(0, self.spare[gpu_type])
        self.over: dict[str, int] = dict.fromkeys(capacity, 0)
        for (tenant, gpu_type), milli in usage.items():
            self.add(tenant, gpu_type, milli)

    def cohort(self, tenant: str) -> str:
        return self.cohort_by_tenant.get(tenant, DEFAULT_COHORT)

    def _over(self, key: tuple[str, str]) -> int:
        return max(0, self.used.get(key, 0) - self.guaranteed.get(key, 0))

    def add(self, tenant: str, gpu_type: str, milli: int) -> None:
        """Record ``milli`` more (or, negative, less) in use by ``tenant``."""
        key = (self.cohort(tenant), gpu_type)
        before = self._over(key)
        self.used[key] = self.used.get(key, 0) + milli
        self.over[gpu_type] = self.over.get(gpu_type, 0) + self._over(key) - before

    def may_borrow(self, tenant: str, gpu_type: str, milli: int) -> bool:
        """Whether ``tenant`` may take ``milli`` more of ``gpu_type`` above its guarantee."""
        key = (self.cohort(tenant), gpu_type)
        grown = max(0, self.used.get(key, 0) + milli - self.guaranteed.get(key, 0))
        over = self.over.get(gpu_type, 0) - self._over(key) + grown
        return over <= self.spare.get(gpu_type, 0)

    @staticmethod
    def needed(tenants: Iterable[Tenant]) -> bool:
        """One cohort cannot hold more than the cluster, so only two or more need a book."""
        return len({cohort_of(t) for t in tenants}) > 1
