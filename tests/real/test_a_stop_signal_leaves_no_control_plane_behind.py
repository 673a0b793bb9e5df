"""A process holding a ``realcluster.running()`` cluster that gets SIGTERM or SIGINT stops the programs
the cluster started, and removes its folder as on a normal exit, before it ends; it ends as that signal
ends a process. (A benchmark killed with SIGTERM used to leave etcd and kube-apiserver running.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from leftovers import cluster_folders_of, processes_in, said, stop_holder
from realtier import binaries_or_skip
from simcluster.embedded import poll_until

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 300   # the waits below end on progress; this only stops a hung test
CHILD = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)   # Python's own, as a run from a terminal has it
import realcluster
with realcluster.running(tessera=False, kubelets=False) as cluster:
    print("@", cluster.workdir, flush=True)   # what it says for the test (its log lines go to stdout too)
    sys.stdin.read()   # until the test's signal
"""


def _holder(tmp_path: Path) -> subprocess.Popen:
    """A Python process opening a cluster of etcd and the control plane (no Tessera, no kubelets)."""
    binaries_or_skip()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(tmp_path / "holder.log", "w") as log:
        return subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, text=True, cwd=REPO, env=env)


def _ended_by(proc: subprocess.Popen, sig: signal.Signals, folder: str, tmp_path: Path) -> None:
    """``proc`` ends as ``sig`` ends a process, nothing of its cluster running, its folder gone."""
    proc.send_signal(sig)
    status = proc.wait(timeout=HANG_GUARD_S)
    log = (tmp_path / "holder.log").read_text()[-3000:]
    assert (status, processes_in(folder)) == (-sig, {}), log
    assert not Path(folder).exists(), log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_a_running_cluster_stops_its_programs_first(tmp_path, sig):
    proc, folder = _holder(tmp_path), ""
    try:
        folder = said(proc)   # once the cluster runs
        assert folder, (proc.poll(), (tmp_path / "holder.log").read_text()[-3000:])
        assert {"etcd", "kube-apiserver"} <= set(processes_in(folder).values())
        _ended_by(proc, sig, folder, tmp_path)
    finally:
        stop_holder(proc, folder if isinstance(folder, str) else "", HANG_GUARD_S)


def test_sigterm_while_the_control_plane_starts_stops_what_had_started(tmp_path):
    proc, folder = _holder(tmp_path), ""
    try:
        folder = poll_until(lambda: next(iter(cluster_folders_of(proc.pid)), None) or proc.poll() is not None,
                            timeout_s=HANG_GUARD_S, interval_s=0.01, what="the cluster's first program (etcd)")
        assert isinstance(folder, str), (proc.poll(), (tmp_path / "holder.log").read_text()[-3000:])
        _ended_by(proc, signal.SIGTERM, folder, tmp_path)
    finally:
        stop_holder(proc, folder if isinstance(folder, str) else "", HANG_GUARD_S)
