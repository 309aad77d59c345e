"""Stopping a child process and everything it started.

Every long-lived child here (a Spark job's driver, an Airflow component, a Spark server, an emulated job run) is
started in its own session (`start_new_session=True`), so its JVM and Python workers share its process group: a
SIGTERM to the group lets Spark and Airflow shut down cleanly, and whatever is still there after the grace period is
killed. One place for that, used by the local job operator and the scripts that start servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable


def stop_process_groups(processes: Iterable[subprocess.Popen], grace_s: float = 20) -> None:
    """SIGTERM each running process's group, wait up to `grace_s` in all, then SIGKILL the groups still alive."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
