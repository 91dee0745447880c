"""Job specs from YAML/JSON: normalized values, and errors naming the field and line."""

from __future__ import annotations

import pytest

from mosu.core.errors import InvalidInput
from mosu.core.submission import Submission
from mosu.documents import parse_job_spec

FULL = """
name: llama-ft
kind: finetune
priority: high
replicas: 2
gpus: 4
gpu_type: H800
cpu: 16
memory: 64Gi
topology: same-rack
estimate: 2h
max_runtime: 1d
checkpoint_every: 30m
command: torchrun train.py
env: {LR: "0.001"}
workdir: /data
"""


def test_a_full_spec_is_normalized():
    spec = parse_job_spec(FULL)
    job = Submission.of(spec)
    assert job.priority == 100
    assert job.gpu_types == ("H800",)
    assert job.shape.mem_mib == 64 * 1024
    assert job.argv == ("/bin/sh", "-c", "torchrun train.py")
    assert (job.estimate_s, job.max_runtime_s, job.checkpoint_every_s) == (7200, 86400, 1800)
    assert spec.topology == "same-rack"


@pytest.mark.parametrize(
    ("text", "want_field", "want_message"),
    [
        ("name: x\ncommand: [a\n", None, "job.yaml:3: malformed YAML"),
        ("name: x\ncommand: t\ngpus: two\n", "gpus", "valid number"),
        ("name: x\ncommand: t\nkind: party\n", "kind", "'train'"),
        ("name: x\ncommand: t\npriority: urgent\n", "priority", "unknown priority class"),
        ("name: x\ncommand: t\nmemory: lots\n", "memory", "not a size"),
        ("name: x\ncommand: t\ntopology: same-planet\n", "topology", "same-node"),
        ("name: x\ncommand: []\n", "command", "must not be empty"),
        ("name: x\ncommand: t\nenv: {1X: y}\n", "env.1X", "not a valid environment variable"),
    ],
    ids=[
        "yaml syntax",
        "gpus not a number",
        "unknown kind",
        "unknown priority",
        "bad memory",
        "unknown topology",
        "empty command",
        "bad env name",
    ],
)
def test_errors_name_the_field_and_the_reason(text, want_field, want_message):
    with pytest.raises(InvalidInput) as caught:
        parse_job_spec(text, source="job.yaml")
    assert caught.value.field == want_field
    assert want_message in caught.value.message
