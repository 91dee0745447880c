from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from mosu.core.api import NAME_PATTERN, ClusterOut, NodeCreate, NodeOut
from mosu.core.models import NodeState
from mosu.service.deps import PlatformDep, PrincipalDep
from mosu.service.openapi import errors
from mosu.service.services import nodes

router = APIRouter(tags=["nodes"])
NodeName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64)]


@router.post("/v1/nodes", status_code=201, responses=errors(403, 409))
def register_node(body: NodeCreate, platform: PlatformDep, who: PrincipalDep) -> NodeOut:
    with platform.tx() as s:
        out = nodes.register_node(s, principal=who, body=body)
    platform.catalog.invalidate()
    platform.scheduler.wake()
    return out


@router.get("/v1/nodes", responses=errors(403))
def list_nodes(platform: PlatformDep, who: PrincipalDep) -> list[NodeOut]:
    with platform.tx() as s:
        return nodes.list_nodes(s, principal=who)


@router.post("/v1/nodes/{name}/drain", responses=errors(403, 404))
def drain_node(
    name: NodeName, platform: PlatformDep, who: PrincipalDep, stop_jobs: bool = False
) -> NodeOut:
    with platform.tx() as s:
        out = nodes.set_state(
            s, principal=who, name=name, state=NodeState.DRAINING, stop_jobs=stop_jobs
        )
    platform.catalog.invalidate()
    platform.scheduler.wake()
    return out


@router.post("/v1/nodes/{name}/undrain", responses=errors(403, 404))
def undrain_node(name: NodeName, platform: PlatformDep, who: PrincipalDep) -> NodeOut:
    with platform.tx() as s:
        out = nodes.set_state(s, principal=who, name=name, state=NodeState.READY)
    platform.catalog.invalidate()
    platform.scheduler.wake()
    return out


@router.get("/v1/cluster")
def cluster(platform: PlatformDep, who: PrincipalDep) -> ClusterOut:
    with platform.tx() as s:
        return nodes.cluster_summary(s)
