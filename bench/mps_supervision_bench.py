"""MPS control daemon supervision: daemons started and MPS shares marked unhealthy over N checks.

    .venv/bin/python bench/mps_supervision_bench.py [--ticks 6] [--gpus 1] [--delay-s 3.5]

The device plugin's supervisor (``deviceplugin.mpsd.MpsSupervisor``, in this process, on a fake NVML
MPS node of ``--gpus`` A100s) checks the fake control daemon ``--ticks`` times back to back, in three
scenarios: a daemon that answers at once; one that answers every command ``--delay-s`` late (a
CPU-starved node; the supervisor's first question waits 3 s); one that answers at once but is killed
(SIGKILL) before the second check. Counted from outside the supervisor: daemons started (the fake's
``control.log``), second daemons it refused (``An instance of this daemon is already running``: a
supervisor that took slow for gone), daemons alive at the end (the process table), checks after which
the MPS shares were unhealthy, and the median time one check took. Goal: 1 daemon started and 0 unhealthy checks for the
slow daemon; 2 started (the restart) and 0 unhealthy for the killed one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simcluster.fakemps import CONTROL, running_daemons  # noqa: E402
from deviceplugin.mpsd import MpsSupervisor  # noqa: E402
from deviceplugin.mpsdaemon import MpsDaemon  # noqa: E402
from deviceplugin.rm import HealthTracker, NodeDevices  # noqa: E402
from simcluster.plugins import stop_mps_daemon  # noqa: E402
from tessera.config import DevicePluginConfig  # noqa: E402
from tessera.log import configure_logging  # noqa: E402
from tessera.nvml import Nvml  # noqa: E402
from tessera.table import render_table  # noqa: E402

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"
DELAY_ENV = "TESSERA_FAKE_MPS_ANSWER_DELAY_S"


def node(root: Path, gpus: int) -> NodeDevices:
    description = root / "nvml.yaml"
    description.write_text((REPO / "tessera" / "nodes" / "a100-80gb-mps.yaml").read_text()
                           .replace("count: 8", f"count: {gpus}"))
    os.environ["TESSERA_FAKE_NVML"] = str(description)
    with Nvml() as nvml:
        found = nvml.read_gpus()
    return NodeDevices(found, default_mode="mps", gpu_modes={}, replicas=4,
                       health=HealthTracker([43], [48, 79], 300.0), label_mode=None)


def run(scenario: str, ticks: int, gpus: int, delay_s: float) -> tuple:
    root = Path(tempfile.mkdtemp(prefix="tmsb-", dir="/tmp"))
    mps = root / "mps"
    os.environ[DELAY_ENV] = str(delay_s) if scenario == "slow" else "0"  # the daemons it starts inherit it
    try:
        rm = node(root, gpus)
        config = DevicePluginConfig(mps_pipe_directory=str(mps / "pipe"), mps_log_directory=str(mps / "log"),
                                    mps_shm_directory=str(mps / "shm"), mps_user=os.getuid())
        daemon = MpsDaemon(CONTROL, config.mps_pipe_directory, config.mps_log_directory)
        if daemon.launch() is not None or not wait(daemon.pid):
            raise RuntimeError("the fake daemon did not start")
        supervisor = MpsSupervisor(CONTROL, config, rm)
        unhealthy, took = 0, []
        for tick in range(ticks):
            if scenario == "killed" and tick == 1:
                os.kill(daemon.pid(), signal.SIGKILL)
            start = time.perf_counter()
            supervisor.check()
            took.append(time.perf_counter() - start)
            if any(not ok for resource in (CORE, MEM) for _, ok in rm.listing(resource)):
                unhealthy += 1
        log = (mps / "log" / "control.log").read_text()
        started, refused = log.count("Control daemon started"), log.count("Second daemon refused")
        alive = len(running_daemons(mps))
        return (scenario, ticks, started, refused, alive, unhealthy, f"{statistics.median(took):.2f} s")
    finally:
        stop_mps_daemon(mps)
        shutil.rmtree(root, ignore_errors=True)


def wait(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--gpus", type=int, default=1, help="MPS GPUs on the node (one default command each)")
    parser.add_argument("--delay-s", type=float, default=3.5, help="how late the slow daemon answers")
    args = parser.parse_args()
    configure_logging("error", "json", stream=open(os.devnull, "w"))
    rows = [run(scenario, args.ticks, args.gpus, args.delay_s) for scenario in ("quick", "slow", "killed")]
    print(render_table(("daemon", "checks", "daemons started", "second refused", "alive after", "checks unhealthy",
                        "check p50"), rows,
                       title=f"MPS supervision, {args.gpus} MPS GPU(s), slow = every answer {args.delay_s} s late "
                             f"(goal: slow 1 started 0 unhealthy; killed 2 started 0 unhealthy)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
