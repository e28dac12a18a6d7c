"""Stop what an interrupted run leaves behind, after it has gone.

On Ctrl-C with training lanes still blocked in Ray calls the CLI cannot call `ray.shutdown()`
(Ray ends a process whose thread touches a shut-down core worker with exit code 1, racing the 130
the user should get), and killing the local cluster from inside has the same race (the core worker
exits when its raylet dies). So the CLI notes its descendants - the local cluster's raylet, GCS,
agents and workers, all started for this run - hands them to this small process and leaves; this
process waits until the CLI has exited, then stops them: SIGTERM, then SIGKILL after a grace period.

    python -m bench.reaper PARENT_PID PID:CREATE_TIME ...
"""
from __future__ import annotations

import os
import subprocess
import sys
import time


def reap_descendants_after_exit() -> None:
    """Hand this process's descendants to a detached reaper (stdlib + psutil: starts in ~0.1 s)."""
    import psutil

    family = [f"{p.pid}:{p.create_time()}" for p in psutil.Process().children(recursive=True)]
    if family:
        subprocess.Popen([sys.executable, "-m", "bench.reaper", str(os.getpid()), *family], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _reap(parent: int, family: list[str], grace_s: float = 3.0, wait_parent_s: float = 30.0) -> None:
    import psutil

    deadline = time.time() + wait_parent_s
    while psutil.pid_exists(parent) and time.time() < deadline:
        time.sleep(0.05)
    procs = []
    for item in family:
        pid, created = item.split(":")
        try:
            p = psutil.Process(int(pid))
            if abs(p.create_time() - float(created)) < 0.01:  # the same process, not a reused pid
                procs.append(p)
        except psutil.Error:
            pass
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    _reap(int(sys.argv[1]), sys.argv[2:])
