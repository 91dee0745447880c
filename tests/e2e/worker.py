"""A stand-in training job for end-to-end tests.

Usage: worker.py OUT_DIR RELEASE_NAME. Records its environment on start, writes a
checkpoint file and exits 0 on SIGTERM, and exits 0 by itself once the file
OUT_DIR/RELEASE_NAME exists (or after 120 s, so nothing outlives a broken test).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def main() -> None:
    out, release = Path(sys.argv[1]), sys.argv[2]
    job, attempt = os.environ["MOSU_JOB_ID"], os.environ["MOSU_ATTEMPT"]
    replica = os.environ["MOSU_REPLICA"]
    tag = f"{job}-{attempt}-{replica}"
    keys = ("CUDA_VISIBLE_DEVICES", "MOSU_GPU_FRACTION", "MOSU_NUM_REPLICAS", "MOSU_REPLICA")
    seen = {k: os.environ.get(k) for k in keys}
    seen["pid"] = os.getpid()
    seen["resumed"] = (out / f"checkpoint-{job}").exists()
    (out / f"start-{tag}.json").write_text(json.dumps(seen))

    def on_term(_signum: int, _frame: object) -> None:
        (out / f"checkpoint-{job}").write_text(f"attempt {attempt}\n")
        (out / f"terminated-{tag}").write_text("")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    print(f"job {job} attempt {attempt} on GPUs {seen['CUDA_VISIBLE_DEVICES']}", flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / release).exists():
        time.sleep(0.05)


if __name__ == "__main__":
    main()
