"""What submissions are checked against: the nodes by kind, counted, so a large cluster's
checks walk a handful of kinds and still add up every node."""

from __future__ import annotations

import pytest

from mosu.core.errors import CapacityError, InvalidInput
from mosu.core.jobspec import job_spec_from_mapping
from mosu.core.submission import Submission
from mosu.service.platform import Platform
from mosu.service.services.catalog import Catalog, NodeFacts, load_catalog
from mosu.service.services.jobs import check_fits_cluster
from tests.service.conftest import TestClient


def catalog(*nodes: NodeFacts) -> Catalog:
    return Catalog(nodes=nodes, limits={"a": {}})


H800x3 = NodeFacts("H800", 8, 64_000, 512_000, "ready", count=3)
H800_DOWN = NodeFacts("H800", 8, 64_000, 512_000, "down", count=5)
A100_SMALL = NodeFacts("A100", 4, 8_000, 64_000, "ready", count=2)


@pytest.mark.parametrize(
    ("nodes", "spec", "refused"),
    [
        ((H800x3,), {"gpus": 8, "replicas": 3}, None),
        ((H800x3,), {"gpus": 8, "replicas": 4}, "at most 24 of one type"),
        ((H800x3, H800_DOWN), {"gpus": 8, "replicas": 4}, "at most 24 of one type"),
        ((H800x3, A100_SMALL), {"gpus": 4, "replicas": 8}, "at most 24 of one type"),
        ((H800x3, A100_SMALL), {"gpus": 4, "replicas": 2, "gpu_type": "A100"}, None),
        ((H800x3, A100_SMALL), {"gpus": 4, "replicas": 3, "gpu_type": "A100"}, "at most 8"),
        ((H800x3,), {"gpus": 16}, "largest node has 8"),
        ((H800_DOWN,), {"gpus": 1, "gpu_type": "H800"}, "unknown GPU type 'H800'"),
        (
            (H800x3,),
            {"gpus": 8, "replicas": 2, "topology": "same-node"},
            "GPUs on one node; the largest has 8",
        ),
    ],
    ids=[
        "three nodes of a kind hold three replicas",
        "not four",
        "down nodes count for nothing",
        "a type's capacity is its own",
        "two small nodes of a named type",
        "not three",
        "bigger than any node",
        "only down nodes of a type",
        "same-node above one node",
    ],
)
def test_a_submission_is_checked_against_every_node_of_each_kind(nodes, spec, refused):
    job = Submission.of(job_spec_from_mapping({"name": "j", "command": "true", **spec}))
    if refused is None:
        check_fits_cluster(catalog(*nodes), job, "a")
        return
    with pytest.raises((CapacityError, InvalidInput), match=refused):
        check_fits_cluster(catalog(*nodes), job, "a")


def test_the_catalog_counts_alike_nodes_as_one_kind(api: TestClient, platform: Platform):
    for k in range(5):
        r = api.post("/v1/nodes", json={"name": f"h{k}", "gpu_type": "H800", "gpus": 8})
        assert r.status_code == 201, r.text
    r = api.post("/v1/nodes", json={"name": "a0", "gpu_type": "A100", "gpus": 4})
    assert r.status_code == 201, r.text
    with platform.sessions() as s:
        kinds = load_catalog(s).nodes
    assert sorted((k.gpu_type, k.gpus, k.count) for k in kinds) == [("A100", 4, 1), ("H800", 8, 5)]
