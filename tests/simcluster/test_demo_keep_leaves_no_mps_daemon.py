"""``tessera demo --keep`` stopped by SIGTERM leaves no MPS control daemon behind, also after the daemon
stopped answering for a while (SIGSTOP: a CPU-starved node): one daemon per MPS node while it runs,
none in the process table after."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simcluster.fakemps import running_daemons

TESSERA = [sys.executable, "-m", "tessera_cli.main"]
FROZEN_S = 5.0  # the plugin asks every second and waits 3 s for an answer: a few rounds unanswered


def _serve_then_sigterm(proc: subprocess.Popen, workdir: Path) -> str | None:
    """Wait (on the demo's own progress) until it serves kubectl, freeze the MPS daemon for a few
    supervision rounds, check one daemon per MPS node, send SIGTERM; None, or what went wrong."""
    for line in proc.stdout:  # ends when the demo ends: no fixed deadline while it makes progress
        if line.startswith("export KUBECONFIG="):
            break
    else:
        return "the demo ended before serving kubectl"
    daemons = running_daemons(workdir / "nodes" / "a100-mps" / "mps")
    if len(daemons) != 1:
        return f"not one daemon on the MPS node: {daemons}"
    os.kill(daemons[0], signal.SIGSTOP)  # alive, its socket takes connections, nothing answers
    time.sleep(FROZEN_S)
    os.kill(daemons[0], signal.SIGCONT)
    serving = {d.parent.name: running_daemons(d) for d in sorted(workdir.glob("nodes/*/mps"))}
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=300)  # hang guard only
    if len(serving.get("a100-mps") or []) != 1 or any(len(pids) > 1 for pids in serving.values()):
        return f"not one daemon on the MPS node and at most one per node while it ran: {serving}"
    return None if code == 0 else f"the demo exited {code} after SIGTERM"


def test_demo_keep_leaves_no_mps_daemon_after_sigterm():
    workdir = Path(tempfile.mkdtemp(prefix="tdk-", dir="/tmp"))  # short: unix socket paths under it
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([*TESSERA, "demo", "--keep", "--workdir", str(workdir), "--png",
                                 str(workdir / "occupancy.png")], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            problem = _serve_then_sigterm(proc, workdir)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            left = running_daemons(workdir)
            for pid in left:  # not into the next test either
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(workdir, ignore_errors=True)
        err.seek(0)
        demo_said = err.read()[-3000:]
    assert left == [], f"MPS control daemons left after the demo ended: {left} ({problem})\n{demo_said}"
    assert problem is None, f"{problem}\n{demo_said}"
