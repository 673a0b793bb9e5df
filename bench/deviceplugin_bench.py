"""Device plugin benchmark: the plugin in its own process on a fake 8-GPU MPS node (800 core IDs,
640 memory IDs), driven over its real unix sockets by the simulated kubelet's device manager.

    python bench/deviceplugin_bench.py [--rounds 300] [--restarts 10]

Measures Allocate and GetPreferredAllocation latency as the kubelet sees it (gRPC round trip,
p50/p99), Xid-to-unhealthy latency (injection to the kubelet's device list), kubelet-restart-to-
registered latency (one restart, and a burst of five back-to-back restarts, timed from the last;
median and max over ``--restarts``), and the plugin's resident memory. Goals: Allocate p99 <= 5 ms,
Xid to unhealthy <= 1 s, re-registration <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deviceplugin.server import socket_name  # noqa: E402
from simcluster.fakemps import CONTROL as FAKE_MPS_CONTROL  # noqa: E402
from simcluster.kubelet.devicemanager import DeviceManager  # noqa: E402
from simcluster.plugins import stop_mps_daemon  # noqa: E402
from simcluster.processes import stop_process  # noqa: E402
from tessera.deviceids import gpu_of  # noqa: E402
from tessera.fakenvml import FaultInjector  # noqa: E402
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api  # noqa: E402
from tessera.log import configure_logging  # noqa: E402
from tessera.table import render_table  # noqa: E402

CORE, MEM = "nvidia.com/mps-core", "nvidia.com/mps-memory"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def wait(predicate, timeout: float, step: float = 0.001) -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("condition not reached")
        time.sleep(step)
    return time.perf_counter() - start


@dataclass
class BenchPlugin:
    """tessera-device-plugin in its own process on a fake node, registered with the simulated kubelet."""

    root: Path
    desc: Path
    plugin_dir: Path
    manager: DeviceManager
    proc: subprocess.Popen

    def stub(self, resource: str) -> deviceplugin_grpc.DevicePluginStub:
        """A client of the plugin's socket for ``resource``, as the kubelet dials it."""
        channel = grpc.insecure_channel(f"unix://{self.plugin_dir / socket_name(resource)}")
        return deviceplugin_grpc.DevicePluginStub(channel)


@contextmanager
def running_plugin(node: str, mode: str, resources: tuple[str, ...], timeout_s: float = 30.0) -> Iterator[BenchPlugin]:
    """The plugin on ``tessera/nodes/<node>`` (``--default-mode=mode``), once every one of ``resources``
    has devices in the kubelet's view; stopped (with its MPS daemon) and its folder removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="tdpb-", dir="/tmp"))
    desc = root / "nvml.yaml"
    shutil.copy(REPO / "tessera" / "nodes" / node, desc)
    plugin_dir = root / "dp"
    plugin_dir.mkdir()
    manager = DeviceManager(str(plugin_dir), str(plugin_dir / "ckpt"), pod_resources_socket=str(root / "pr.sock"))
    manager.start()
    mps = root / "mps"
    env = {**os.environ, "TESSERA_FAKE_NVML": str(desc), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deviceplugin.main", f"--device-plugin-path={plugin_dir}",
         f"--pod-resources-socket={root / 'pr.sock'}", f"--grant-key-path={root / 'grant.key'}",
         f"--default-mode={mode}", "--xid-quiet-period-s=0.3", "--listen=127.0.0.1:0", "--log-level=warning",
         f"--mps-pipe-directory={mps / 'pipe'}", f"--mps-shm-directory={mps / 'shm'}",
         f"--mps-log-directory={mps / 'log'}", f"--mps-user={os.getuid()}",
         f"--mps-control-binary={FAKE_MPS_CONTROL}", "--node-name=bench"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(root / "plugin.log", "w"), cwd=str(REPO))
    try:
        wait(lambda: all(manager.allocatable().get(r, 0) > 0 for r in resources), timeout_s, 0.01)
        yield BenchPlugin(root, desc, plugin_dir, manager, proc)
    finally:
        stop_process(proc, 10.0)
        manager.stop()
        if mode == "mps":
            stop_mps_daemon(mps)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--restarts", type=int, default=10, help="kubelet restarts (and bursts of five) to time")
    args = parser.parse_args()
    configure_logging("error", "json", stream=open(os.devnull, "w"))
    rows = []
    with running_plugin("a100-80gb-mps.yaml", "mps", (CORE, MEM)) as plugin:
        manager, desc, proc = plugin.manager, plugin.desc, plugin.proc
        wait(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, 30, 0.01)
        stub, mem_stub = plugin.stub(CORE), plugin.stub(MEM)
        core_ids = list(manager.devices(CORE))
        mem_ids = list(manager.devices(MEM))
        pref, alloc = [], []
        for k in range(args.rounds + 20):
            req = api.PreferredAllocationRequest(container_requests=[api.ContainerPreferredAllocationRequest(
                available_deviceIDs=core_ids, allocation_size=50)])
            t = time.perf_counter()
            ids = stub.GetPreferredAllocation(req).container_responses[0].deviceIDs
            t1 = time.perf_counter()
            stub.Allocate(api.AllocateRequest(container_requests=[api.ContainerAllocateRequest(devices_ids=ids)]))
            t2 = time.perf_counter()
            gpu = gpu_of(ids[0])
            mem_stub.Allocate(api.AllocateRequest(container_requests=[api.ContainerAllocateRequest(
                devices_ids=[i for i in mem_ids if i.startswith(gpu)][:8])]))
            if k >= 20:  # warm-up excluded
                pref.append(t1 - t)
                alloc.append(t2 - t1)
        rows.append(("GetPreferredAllocation (50 of 800 core IDs)", f"{pct(pref, 50) * 1e3:.2f} ms",
                     f"{pct(pref, 99) * 1e3:.2f} ms", "-"))
        rows.append(("Allocate mps-core 50", f"{pct(alloc, 50) * 1e3:.2f} ms", f"{pct(alloc, 99) * 1e3:.2f} ms",
                     "p99 <= 5 ms"))
        faults = FaultInjector(desc)
        uuids = [g.uuid for g in faults.description.gpus]
        xids = []
        for i in range(8):
            uuid = uuids[i]
            t = time.perf_counter()
            faults.inject_xid(i, 62)
            xids.append(wait(lambda: all(h != "Healthy" for d, h in manager.devices(CORE).items() if d.startswith(uuid)), 5))
            wait(lambda: all(h == "Healthy" for d, h in manager.devices(CORE).items() if d.startswith(uuid)), 5, 0.01)
        rows.append(("Xid to unhealthy (kubelet's view)", f"{pct(xids, 50) * 1e3:.1f} ms", f"{max(xids) * 1e3:.1f} ms (max)",
                     "<= 1 s"))
        for burst in (1, 5):
            restarts = []
            for _ in range(args.restarts):
                for _ in range(burst):  # back to back: each restart as soon as the last one returned
                    manager.restart()
                restarts.append(wait(lambda: manager.allocatable() == {CORE: 800, MEM: 640}, 30))
            what = "kubelet restart" if burst == 1 else f"{burst} back-to-back kubelet restarts"
            rows.append((f"{what} to registered ({args.restarts} times)", f"{pct(restarts, 50) * 1e3:.0f} ms",
                         f"{max(restarts) * 1e3:.0f} ms (max)", "<= 2 s"))
        rss = int(next(line.split()[1] for line in open(f"/proc/{proc.pid}/status") if line.startswith("VmRSS")))
        rows.append(("plugin resident memory", f"{rss / 1024:.0f} MiB", "-", "-"))
    print(render_table(("measure", "p50", "p99", "goal"), rows,
                       title=f"device plugin, fake 8 x A100-80GB MPS node (800 core IDs, 640 memory IDs), "
                             f"{args.rounds} rounds"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
