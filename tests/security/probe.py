"""A hostile job: tries to reach the platform and other tenants from inside a replica.

Usage: probe.py TARGETS_JSON. Prints one JSON line: for every probe whether it got
through (``ok``) and what it saw (whatever it read goes to the log on purpose, so a
leak would show there), plus the replica's own environment.
"""

import json
import os
import signal
import sys

targets = json.loads(sys.argv[1])
results = {}


def attempt(name, action):
    try:
        got = action()
        results[name] = {"ok": True, "saw": str(got)[:2000]}
    except OSError as exc:
        results[name] = {"ok": False, "saw": f"{type(exc).__name__}: {exc.strerror}"}


def read(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


for name, path in targets["read"].items():
    attempt(f"read {name}", lambda path=path: read(path))
for name, path in targets["list"].items():
    attempt(f"list {name}", lambda path=path: sorted(os.listdir(path)))
server = int(targets["server_pid"])
attempt("read the server's environment", lambda: read(f"/proc/{server}/environ"))
attempt("signal the server", lambda: os.kill(server, signal.SIGTERM))
attempt("stop the server", lambda: os.kill(server, signal.SIGSTOP))
results["env"] = dict(os.environ)
results["uid"] = os.getuid()
print(json.dumps(results), flush=True)
