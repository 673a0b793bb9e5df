"""A slow MPS control daemon is waited for, a gone one is started again once, and only one that cannot
be started makes the MPS shares unhealthy (the supervisor against the fake control daemon, in process;
its numbers under load: bench/mps_supervision_bench.py)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from simcluster.fakemps import CONTROL, running_daemons
from deviceplugin.mpsd import MpsSupervisor
from deviceplugin.mpsdaemon import DaemonState, MpsDaemon
from deviceplugin.rm import HealthTracker, NodeDevices
from dpharness import wait_until
from tessera.config import DevicePluginConfig
from tessera.nvml import Nvml

NODES = Path(__file__).resolve().parents[2] / "tessera" / "nodes"
CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"
SLOW_S = 3.5  # the supervisor's first question waits 3 s


def one_gpu_node(tmp_path, monkeypatch) -> NodeDevices:
    description = tmp_path / "nvml.yaml"
    description.write_text((NODES / "a100-80gb-mps.yaml").read_text().replace("count: 8", "count: 1"))
    monkeypatch.setenv("TESSERA_FAKE_NVML", str(description))
    with Nvml() as nvml:
        gpus = nvml.read_gpus()
    return NodeDevices(gpus, default_mode="mps", gpu_modes={}, replicas=4,
                       health=HealthTracker([43], [48, 79], 300.0), label_mode=None)


def supervisor(rm: NodeDevices, root: Path, binary: str = CONTROL, dra=None) -> MpsSupervisor:
    config = DevicePluginConfig(mps_pipe_directory=str(root / "pipe"), mps_log_directory=str(root / "log"),
                                mps_shm_directory=str(root / "shm"), mps_user=os.getuid())
    return MpsSupervisor(binary, config, rm, dra=dra)


def unhealthy_shares(rm: NodeDevices) -> int:
    return sum(1 for resource in (CORE, MEM) for _, healthy in rm.listing(resource) if not healthy)


def start_daemon(root: Path, **env: str) -> int:
    env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log"),
           **env}
    subprocess.run([sys.executable, CONTROL, "-d"], env=env, check=True, timeout=60)
    daemon = MpsDaemon(CONTROL, str(root / "pipe"), str(root / "log"))
    return wait_until(daemon.pid, timeout=30, what="the daemon's pid file")


def test_a_daemon_answering_in_3_5_s_is_waited_for_not_replaced(tmp_path, monkeypatch, mps_root):
    rm = one_gpu_node(tmp_path, monkeypatch)
    monkeypatch.setenv("TESSERA_FAKE_MPS_ANSWER_DELAY_S", str(SLOW_S))  # also for any daemon it would start
    pid = start_daemon(mps_root)
    sup = supervisor(rm, mps_root)
    seen = [sup.check() for _ in range(2)]
    while seen[-1] is not None and len(seen) < 8:  # it answers once the supervisor waits long enough
        seen.append(sup.check())
    assert running_daemons(mps_root) == [pid], "no second daemon beside the slow one"
    assert rm.mps_down is None and unhealthy_shares(rm) == 0, "slowness alone makes no share unhealthy"
    assert seen[0] is DaemonState.SLOW, "the 3 s question timed out: the scenario ran"
    assert seen[-1] is None, f"the slow daemon's answer was never waited for: {seen}"
    assert sup.starts == 0


def test_a_killed_daemon_is_seen_gone_and_started_again_once(tmp_path, monkeypatch, mps_root):
    rm = one_gpu_node(tmp_path, monkeypatch)
    sup = supervisor(rm, mps_root)
    assert sup.check() is DaemonState.GONE and sup.starts == 1, "none at first: started"
    first = sup.daemon.pid()
    assert sup.check() is None and running_daemons(mps_root) == [first]
    os.kill(first, signal.SIGKILL)
    assert sup.check() is DaemonState.GONE, "a killed daemon (stale socket and pid file) is gone, not slow"
    assert sup.starts == 2
    assert sup.check() is None, "the new daemon answers"
    second = sup.daemon.pid()
    assert second not in (None, first) and running_daemons(mps_root) == [second]
    assert sup.starts == 2, "started once, not once per check"
    assert rm.mps_down is None and unhealthy_shares(rm) == 0


def test_only_a_daemon_that_cannot_be_started_makes_the_shares_unhealthy(tmp_path, monkeypatch, mps_root):
    rm = one_gpu_node(tmp_path, monkeypatch)
    broken = tmp_path / "nvidia-cuda-mps-control"
    attempts = tmp_path / "attempts"
    broken.write_text(f"#!/bin/sh\ncase \"$1\" in -d) echo start >> {attempts};; esac\n"
                      "echo 'Cannot find MPS control daemon process' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    sup = supervisor(rm, mps_root, binary=str(broken))
    assert sup.check() is DaemonState.GONE
    assert rm.mps_down is not None and unhealthy_shares(rm) == len(rm.listing(CORE)) + len(rm.listing(MEM))
    sup.check()
    assert attempts.read_text().count("start") == 1, "the next start waits for its backoff, not the next check"


def test_the_daemon_numbers_gpus_as_nvml_does(tmp_path, monkeypatch, mps_root):
    # set_default_device_pinned_mem_limit <index> names a CUDA device number: in PCI bus order (NVML's index)
    # only with CUDA_DEVICE_ORDER=PCI_BUS_ID and no CUDA_VISIBLE_DEVICES narrowing the daemon's GPUs
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    rm = one_gpu_node(tmp_path, monkeypatch)
    sup = supervisor(rm, mps_root)
    assert sup.check() is DaemonState.GONE and sup.starts == 1
    with open(f"/proc/{sup.daemon.pid()}/environ", "rb") as fh:
        environ = dict(e.split(b"=", 1) for e in fh.read().split(b"\0") if b"=" in e)
    assert environ.get(b"CUDA_DEVICE_ORDER") == b"PCI_BUS_ID"
    assert b"CUDA_VISIBLE_DEVICES" not in environ
