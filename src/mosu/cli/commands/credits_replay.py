"""``mosu sim replay --rates FILE --grants FILE``: the replay charged as the platform
charges (``mosu.sim.credits``), with credits burned per tenant and when each ran out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mosu.core.errors import InvalidInput
from mosu.core.models import Tenant
from mosu.sim.credits import CreditBook, CreditFileError, book_from_files
from mosu.traces.schema import TraceJob


@dataclass
class CreditReplay:
    rates: Path
    grants: Path
    tenants: Sequence[Tenant]
    start_s: float
    reports: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_options(
        cls,
        rates: Path | None,
        grants: Path | None,
        tenants: Sequence[Tenant],
        jobs: Sequence[TraceJob],
    ) -> CreditReplay | None:
        if rates is None and grants is None:
            return None
        if rates is None or grants is None:
            raise InvalidInput("give both --rates and --grants", field="rates")
        start = min((j.submit_s for j in jobs), default=0.0)
        replay = cls(rates, grants, tenants, start)
        replay.book()  # a bad file is reported before any replay runs
        return replay

    def book(self) -> CreditBook:
        try:
            return book_from_files(self.rates, self.grants, self.tenants, self.start_s)
        except CreditFileError as exc:
            raise InvalidInput(str(exc), field="rates") from None

    def record(self, policy: str, book: CreditBook) -> None:
        self.reports[policy] = book.summary()

    def write(self, out: Path, console: Console) -> None:
        (out / "credits.json").write_text(json.dumps({"policies": self.reports}, indent=2) + "\n")
        for policy, tenants in self.reports.items():
            table = Table(title=f"credits under {policy}", title_justify="left")
            for col in ("tenant", "granted", "burned", "refunded", "refunded GPU-h", "ran out at"):
                table.add_column(col, justify="left" if col == "tenant" else "right")
            for name, t in tenants.items():
                ran_out = t["ran_out_at_s"]
                table.add_row(
                    name,
                    f"{t['granted']:,.0f}",
                    f"{t['burned']:,.1f}",
                    f"{t['refunded']:,.1f}",
                    f"{t['refunded_gpu_hours']:,.1f}",
                    "-" if ran_out is None else f"day {float(ran_out) / 86400:.1f}",
                )
            Console().print(table)
        console.print(f"wrote {out / 'credits.json'}")
