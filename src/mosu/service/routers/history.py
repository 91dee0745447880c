from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from mosu.core.history_api import HistoryExportOut
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import history_export

router = APIRouter(tags=["history"])
Epoch = Annotated[float | None, Query(ge=0, le=1e11, description="UTC epoch seconds")]


@router.get("/v1/history/export", responses=errors(400, 403))
def export(
    platform: PlatformDep, who: PrincipalDep, since: Epoch = None, until: Epoch = None
) -> HistoryExportOut:
    """Jobs submitted in [since, until) with the tenants, quotas and nodes in force, as
    mosu's native trace files (operator only)."""
    with platform.tx() as s:
        exported = history_export.export_history(
            s,
            principal=who,
            now=time.time(),
            since=since,
            until=until,
            profile=platform.settings.profile,
            min_runtime_s=platform.settings.min_runtime_s,
        )
    return HistoryExportOut(**exported.meta(), files=exported.files())
