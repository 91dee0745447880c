"""A replica for the Ray tests: writes what it sees to <out>/replica-<RANK>.json, then
behaves as its mode says (exit, fail, sleep, trap SIGTERM and checkpoint, ignore SIGTERM,
save a checkpoint on SIGUSR1 and report it through MOSU_CHECKPOINT_FILE).

Usage: replica_script.py MODE,MODE,... OUT_DIR (one mode per rank).
"""

import json
import os
import signal
import sys
import time

modes, out = sys.argv[1].split(","), sys.argv[2]
rank = int(os.environ["RANK"])
mode = modes[rank]
seen = {
    k: os.environ.get(k)
    for k in (
        "CUDA_VISIBLE_DEVICES",
        "MASTER_ADDR",
        "MASTER_PORT",
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "NODE_RANK",
        "NNODES",
        "MOSU_JOB_ID",
        "MOSU_REPLICA",
        "MOSU_NUM_REPLICAS",
        "MOSU_NODE",
        "MOSU_GPUS_PER_REPLICA",
        "FROM_JOB",
        "MOSU_ATTEMPT",
        "MOSU_GPU_FRACTION",
    )
}
seen["pid"] = os.getpid()
ancestors, pid = [], os.getppid()
while pid > 1:
    ancestors.append(pid)
    with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
seen["ancestors"] = ancestors
with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
    seen["supervisor_argv"] = [a.decode() for a in f.read().split(b"\0")]


def on_term(signum, frame):
    time.sleep(0.5)  # a checkpoint takes a moment
    with open(os.path.join(out, f"checkpoint-{rank}"), "w") as f:
        f.write("step 42")
    sys.exit(0)


def on_usr1(signum, frame):
    with open(os.path.join(out, f"asked-{rank}"), "w") as f:
        f.write("asked")
    with open(os.environ["MOSU_CHECKPOINT_FILE"], "w") as f:
        f.write("saved")


if mode == "trap":
    signal.signal(signal.SIGTERM, on_term)
elif mode == "usr1":
    signal.signal(signal.SIGUSR1, on_usr1)
elif mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"hello from rank {rank} on {os.environ['MOSU_NODE']}", flush=True)
tmp = os.path.join(out, f"replica-{rank}.tmp")
with open(tmp, "w") as f:
    json.dump(seen, f)
os.replace(tmp, os.path.join(out, f"replica-{rank}.json"))
if mode == "exit":
    sys.exit(0)
if mode == "fail":
    # Fail once every peer has started (written what it saw), so a test can find and
    # check each peer the gang's stop must end; bounded, in case a peer never starts.
    peers = [os.path.join(out, f"replica-{r}.json") for r in range(len(modes))]
    deadline = time.monotonic() + 30
    while not all(map(os.path.exists, peers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    sys.exit(3)
deadline = time.monotonic() + 90  # never outlive a broken test run for long
while time.monotonic() < deadline:
    time.sleep(0.1)
