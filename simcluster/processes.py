"""Stopping the daemons the embedded cluster, the demo, the tests and the benches start as processes."""

from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` (SIGTERM: a graceful stop) unless the process has ended, wait ``timeout_s`` for it,
    then SIGKILL it; returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
