"""Scrape latency and resident memory of tessera-exporter on a big MIG node, as a printed table.

    .venv/bin/python bench/exporter_bench.py [--scrapes 500] [--churn-s 20]

The node: 8 A100-80GB GPUs in MIG mode, seven 1g.10gb instances each (56 instances), 100 granted
containers spread over them (two on some instances), each with a hook record, a cgroup in a fake
``/proc``, a pod-resources entry and a GPU process. The exporter runs as its own process
(fake NVML, collecting every second). Table 1: ``/metrics`` latency over HTTP, p50 and p99, plain
and gzip. Table 2: the exporter's resident memory after the first collections and again after
``--churn-s`` seconds in which 10 containers are replaced by new ones every second (label sets of
gone containers must be dropped, so memory stays flat). Goal: p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simcluster.exporter_launch import start_exporter, wait_ready  # noqa: E402
from hook.container import OciState, PodIdentity  # noqa: E402
from hook.records import remove_record, write_record  # noqa: E402
from simcluster.kubelet.checkpoint import ContainerAllocation  # noqa: E402
from simcluster.kubelet.podresources import PodResourcesServer  # noqa: E402
from tessera.fakenvml import FaultInjector, load_description  # noqa: E402
from tessera.grant import new_grant  # noqa: E402
from tessera.table import render_table  # noqa: E402

RESOURCE = "nvidia.com/mig-1g.10gb"
NODE_YAML = """node: bench-a100-mig
driver_version: "550.54.15"
cuda_version: "12.4"
gpus:
  - model: A100-SXM4-80GB
    count: 8
    mode: mig
    mig: [1g.10gb, 1g.10gb, 1g.10gb, 1g.10gb, 1g.10gb, 1g.10gb, 1g.10gb]
"""


class Devices:
    """What the pod-resources server lists: one MIG instance per container."""

    def __init__(self) -> None:
        self.held: dict[str, ContainerAllocation] = {}
        self.healthy: dict[str, dict[str, list[int]]] = {RESOURCE: {}}

    def allocations(self) -> list[ContainerAllocation]:
        return list(self.held.values())

    def healthy_devices(self) -> dict[str, dict[str, list[int]]]:
        return self.healthy


class BenchNode:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.description_path = root / "node.yaml"
        self.description_path.write_text(NODE_YAML)
        self.description = load_description(self.description_path)
        self.faults = FaultInjector(self.description_path)
        self.faults.reset()
        self.state_dir, self.proc = root / "containers", root / "proc"
        self.state_dir.mkdir()
        self.proc.mkdir()
        self.slots = [(g.index, m) for g in self.description.gpus for m in g.mig]
        self.devices = Devices()
        for _, m in self.slots:
            self.devices.healthy[RESOURCE][m.uuid] = [0]
        self.server = PodResourcesServer(self.devices, str(root / "pr.sock"))
        self.running: dict[str, tuple[int, str, int]] = {}  # pod -> (slot, container id, GPU pid)
        self.next_pid = 10000

    def start(self, pod: str, slot: int) -> None:
        gpu, mig = self.slots[slot]
        cid = (pod.encode().hex() + "0" * 64)[:64]
        pid, self.next_pid = self.next_pid, self.next_pid + 2
        grant = new_grant(RESOURCE, self.description.node, [mig.uuid], [mig.uuid], ["/dev/nvidia0"])
        cgroup = f"/kubepods.slice/kubepods-pod{pod}.slice/cri-containerd-{cid}.scope"
        write_record(str(self.state_dir), OciState(cid, pid, "/b"), PodIdentity(f"uid-{pod}", pod, "bench", "main"),
                     [grant], {"": cgroup}, {})
        for p in (pid, pid + 1):
            (self.proc / str(p)).mkdir(exist_ok=True)
            (self.proc / str(p) / "cgroup").write_text(f"0::{cgroup}\n")
        self.devices.held[pod] = ContainerAllocation(f"uid-{pod}", "main", RESOURCE, {0: [mig.uuid]}, b"", pod, "bench")
        self.running[pod] = (slot, cid, pid + 1)

    def stop(self, pod: str) -> None:
        slot, cid, _ = self.running.pop(pod)
        self.devices.held.pop(pod, None)
        remove_record(str(self.state_dir), cid)

    def publish_processes(self) -> None:
        """Each MIG instance's processes: one per container on it, 300 MiB each."""
        per_slot: dict[int, list[tuple[int, int]]] = {}
        for slot, _, gpu_pid in self.running.values():
            per_slot.setdefault(slot, []).append((gpu_pid, 300))
        for slot, (gpu, mig) in enumerate(self.slots):
            self.faults.set_processes(gpu, per_slot.get(slot, []), gpu_instance_id=mig.gpu_instance_id)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape_times(url: str, n: int, gz: bool) -> tuple[list[float], int, int]:
    times, size, series = [], 0, 0
    headers = {"Accept-Encoding": "gzip"} if gz else {}
    for _ in range(n):
        req = urllib.request.Request(url + "/metrics", headers=headers)
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
        times.append((time.perf_counter() - t0) * 1000)
        size = len(body)
        text = gzip.decompress(body) if gz else body
        series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return times, size, series


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapes", type=int, default=500)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--churn-s", type=float, default=20.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="txb-"))
    node = BenchNode(root)
    node.server.start()
    proc = None
    try:
        for n in range(args.containers):
            node.start(f"job-{n}", n % len(node.slots))
        node.publish_processes()
        proc = start_exporter(str(node.description_path), node.server.socket_path, str(node.state_dir),
                              "127.0.0.1:0", interval_s=1.0, proc_root=str(node.proc),
                              overuse_dir=str(root / "overuse"), log_path=str(root / "exporter.log"))
        url = wait_ready(proc)
        time.sleep(3)  # a few collections
        rss_start = rss_mib(proc.pid)
        rows = []
        for gz in (False, True):
            times, size, series = scrape_times(url, args.scrapes, gz)
            rows.append(["gzip" if gz else "plain", args.scrapes, series, f"{size / 1024:.0f}",
                         f"{statistics.median(times):.2f}", f"{pct(times, 0.99):.2f}", f"{max(times):.2f}",
                         "yes" if pct(times, 0.99) <= 50 else "NO"])
        print(render_table(["encoding", "scrapes", "series", "KiB", "p50 ms", "p99 ms", "max ms", "p99 <= 50 ms"],
                           rows, title=f"/metrics on {len(node.description.gpus)} GPUs, {len(node.slots)} MIG "
                                       f"instances, {len(node.running)} containers (exporter collecting every 1 s)"))
        print()
        generation, deadline, churned = args.containers, time.monotonic() + args.churn_s, 0
        during: list[float] = []
        while time.monotonic() < deadline:
            for pod in list(node.running)[:10]:
                slot = node.running[pod][0]
                node.stop(pod)
                node.start(f"job-{generation}", slot)
                generation += 1
                churned += 1
            node.publish_processes()
            t0 = time.perf_counter()
            urllib.request.urlopen(url + "/metrics", timeout=5).read()
            during.append((time.perf_counter() - t0) * 1000)
            time.sleep(1.0)
        time.sleep(2)
        rss_end = rss_mib(proc.pid)
        print(render_table(
            ["phase", "containers replaced", "RSS MiB", "scrape p99 ms"],
            [["after first collections", 0, f"{rss_start:.1f}", ""],
             [f"after {args.churn_s:.0f} s of churn", churned, f"{rss_end:.1f}", f"{pct(during, 0.99):.2f}"],
             ["growth", "", f"{rss_end - rss_start:+.1f}", ""]],
            title="Exporter resident memory while pods come and go"))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        node.server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
