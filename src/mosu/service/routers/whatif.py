from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Response

from mosu.core.errors import NotFound
from mosu.core.history_api import WhatIfRequest, WhatIfTaskList, WhatIfTaskOut
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import whatif

router = APIRouter(prefix="/v1/whatif", tags=["whatif"])
TaskId = Annotated[str, Path(pattern="^[0-9a-f]{16}$")]


@router.post("", status_code=202, responses=errors(403, 503))
def start(body: WhatIfRequest, platform: PlatformDep, who: PrincipalDep) -> WhatIfTaskOut:
    """Replay the history as configured and with the changes, in the background
    (operator only); poll the task for progress and the report."""
    now = time.time()
    config = {
        "profile": platform.settings.profile,
        "min_runtime_s": platform.settings.min_runtime_s,
    }
    with platform.tx() as s:
        plan = whatif.plan(s, principal=who, body=body, now=now, **config)
    request = whatif.stored_request(body, now=now, **config)
    return whatif.task_out(platform.whatif.submit(plan, request=request))


@router.get("", responses=errors(403))
def list_tasks(platform: PlatformDep, who: PrincipalDep) -> WhatIfTaskList:
    who.require_operator("see what-if replays")
    return WhatIfTaskList(tasks=[whatif.task_out(t) for t in platform.whatif.list()])


@router.get("/{task_id}", responses=errors(403, 404))
def get_task(task_id: TaskId, platform: PlatformDep, who: PrincipalDep) -> WhatIfTaskOut:
    who.require_operator("see what-if replays")
    return whatif.task_out(platform.whatif.get(task_id))


@router.post("/{task_id}/cancel", responses=errors(403, 404))
def cancel(task_id: TaskId, platform: PlatformDep, who: PrincipalDep) -> WhatIfTaskOut:
    who.require_operator("cancel what-if replays")
    return whatif.task_out(platform.whatif.cancel(task_id))


@router.get(
    "/{task_id}/waits.png",
    responses={**errors(403, 404), 200: {"content": {"image/png": {}}}},
    response_class=Response,
)
def plot(task_id: TaskId, platform: PlatformDep, who: PrincipalDep) -> Response:
    """Average and p95 wait per tenant, before and after (once the task succeeded)."""
    who.require_operator("see what-if replays")
    task = platform.whatif.get(task_id)
    if task.plot_png is None:
        raise NotFound(f"what-if task {task_id} has no plot (it is {task.state.value})")
    return Response(task.plot_png, media_type="image/png")
