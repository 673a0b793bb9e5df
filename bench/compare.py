"""Tessera's hot paths against their floors, measured in one run: one table of ratios.

    .venv/bin/python bench/compare.py [--sizes 1000,5000] [--pods 200] [--rounds 300] [--runs 40] [--quick]
                                      [--starts 10] [--restarts 50]
                                      [--only extender,allocate,hook,nvidia-plugin] [--no-peers]

Absolute times on a shared machine move from one day to the next; a ratio measured in one run holds.
Each path runs beside the least its job can cost, on the same requests, interleaved:

- extender (filter, prioritize, and the two together per cycle) at each node count, against a
  do-nothing extender on the same HTTP server that decodes the same ExtenderArgs and answers the same
  shape (``extender_floor``); round trips as kube-scheduler's side sees them, answer read, not decoded.
  Beside them the peer, Alibaba's gpushare-scheduler-extender (``gpushare_peer``; built by
  scripts/build-gpushare.sh, minutes the first time; a note under the table says why where it cannot
  be), filtering the same pods asking ``aliyun.com/gpu-mem`` on the same nodes; and HAMi's scheduler
  extender (``hami_peer``; scripts/build-hami.sh), whose filter is its whole decision (it picks one
  node and writes it on the pod), asked the same pods in ``nvidia.com/gpu``, ``gpumem``, ``gpucores``.
- Allocate for whole GPUs, time-slicing and an MPS share, against a gRPC echo on the same kind of unix
  socket answering the same bytes (``allocate_floor``).
- the device plugin beside NVIDIA's (``nvidia_plugin_peer``; scripts/build-nvidia-device-plugin.sh builds
  it, scripts/build-mocknvml.sh the mock NVML both run on: NVIDIA's H100 profile, 8 GPUs; a note says why
  where either cannot be built): registration from start, Allocate of one whole GPU and of one
  time-sliced replica, re-registration after a kubelet restart, each against the simulated kubelet.
- the hook as a production-style release (``python -m hook.release``) against a no-op hook, and
  against its own interpreter's start-up (``hook_floor``); needs root (fake device nodes).

Goals (issue 22), judged on medians: the extender at most 2x its protocol floor at 5,000 nodes and
at least 10x faster than gpushare's filter there, Allocate at most 2x the gRPC echo, the hook adding
at most 40 ms over a no-op hook, the device plugin re-registering no slower than NVIDIA's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import allocate_floor  # noqa: E402 - bench/, on the path above
import deviceplugin_bench  # noqa: E402
import extender_bench  # noqa: E402
import extender_floor  # noqa: E402
import gpushare_peer  # noqa: E402
import hami_peer  # noqa: E402
import hook_bench  # noqa: E402
import hook_floor  # noqa: E402
import nvidia_plugin_peer  # noqa: E402
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api  # noqa: E402
from simcluster.extenders import free_port  # noqa: E402
from simcluster.processes import stop_process  # noqa: E402
from tessera.log import configure_logging  # noqa: E402
from tessera.table import render_table  # noqa: E402

pct = hook_bench.percentile  # the q quantile, nearest rank

HEADERS = ("path", "Tessera p50 ms", "p99 ms", "floor", "floor p50 ms", "p99 ms", "ratio p50", "ratio p99", "goal",
           "met")
EXTENDER_GOAL_NODES = 5000
GPUS_PER_NODE, GIB_PER_GPU, MODEL = 8, 40, "A100-SXM4-40GB"  # extender_bench's light nodes
# (label, node description, --default-mode, resource, devices asked)
ALLOCATIONS = [("whole GPU", "a100-80gb-whole.yaml", "exclusive", "nvidia.com/gpu", 1),
               ("time-slicing", "t4-timeslice.yaml", "timeslice", "nvidia.com/gpu.shared", 1),
               ("MPS share", "a100-80gb-mps.yaml", "mps", "nvidia.com/mps-core", 50)]
WARMUP = 20


@dataclass
class Row:
    """One path against its floor (milliseconds per call). ``goal``: ("ratio", most) on the ratio of
    medians, ("added", most ms) on the median's excess over the floor's, or None."""

    path: str
    tessera: list[float]
    floor_name: str
    floor: list[float]
    goal: tuple[str, float] | None = None

    def ratio(self, q: float) -> float:
        return pct(self.tessera, q) / pct(self.floor, q)

    def added_ms(self) -> float:
        return statistics.median(self.tessera) - statistics.median(self.floor)

    def met(self) -> str:
        if self.goal is None:
            return "-"
        kind, most = self.goal
        value = self.ratio(0.5) if kind == "ratio" else self.added_ms()
        return "yes" if value <= most else "NO"

    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        kind, most = self.goal
        if kind == "ratio":
            return f"ratio p50 <= {most:g}"
        return f"adds <= {most:g} ms (adds {self.added_ms():.1f})"

    def cells(self) -> list[str]:
        """The row as printed."""
        return [self.path, f"{pct(self.tessera, 0.5):.2f}", f"{pct(self.tessera, 0.99):.2f}", self.floor_name,
                f"{pct(self.floor, 0.5):.2f}", f"{pct(self.floor, 0.99):.2f}", f"{self.ratio(0.5):.3g}",
                f"{self.ratio(0.99):.3g}", self.goal_text(), self.met()]


# -- extender --------------------------------------------------------------------------------------

class Beside:
    """What runs beside Tessera's extender in one latency run: after each scheduling cycle, the same filter
    and prioritize requests go to the floor (its filter answer shaped as Tessera's),
    and the filter to gpushare-scheduler-extender where ``gpushare`` (its binary) is given."""

    def __init__(self, floor_url: str, gpushare: Path | None, workdir: Path, hami: Path | None = None) -> None:
        self.floor = extender_bench.VerbClient(floor_url)
        self.gpushare, self.workdir = gpushare, workdir
        self.hami = hami_peer.HamiPeer(hami, workdir, GPUS_PER_NODE, GIB_PER_GPU, MODEL) if hami else None
        self.peer: extender_bench.VerbClient | None = None
        self.peer_proc: subprocess.Popen | None = None

    def prepare(self, bench, names: list[str]) -> None:
        """Before the extender starts: the nodes get gpushare's (and HAMi's) resources and they start on them."""
        if self.hami is not None:
            self.hami.prepare(bench, names)
        if self.gpushare is None:
            return
        gpushare_peer.add_gpu_mem(bench.api, names, GPUS_PER_NODE, GIB_PER_GPU)
        self.peer_proc, url = gpushare_peer.spawn_gpushare(self.gpushare, bench.kubeconfig, free_port(),
                                                           self.workdir / "gpushare.log")
        self.peer = extender_bench.VerbClient(url)

    def __call__(self, pod: dict, names_json: bytes, filter_body: bytes, prioritize_body: bytes, answer: dict) -> None:
        self.floor.call("filter", filter_body, extender_floor.shape_headers(answer))
        if prioritize_body:
            self.floor.call("prioritize", prioritize_body)
        if self.peer is not None:
            self.peer.call(gpushare_peer.FILTER_PATH, gpushare_peer.filter_body(pod, names_json, GIB_PER_GPU))
        if self.hami is not None:
            self.hami.call(pod, names_json)

    def close(self) -> None:
        self.floor.close()
        if self.hami is not None:
            self.hami.close()
        if self.peer is not None:
            self.peer.close()
        if self.peer_proc is not None:  # gpushare stops its workers on SIGTERM, not its HTTP server
            stop_process(self.peer_proc, 2.0)


def extender_rows(sizes: list[int], pods: int, workdir: Path, peers: bool = True) -> tuple[list[Row], list[str]]:
    """filter, prioritize and both per cycle, at each size, against the protocol floor; filter against
    gpushare's where it can be built. Also notes on what did not run."""
    rows, notes = [], []
    binary, why = gpushare_peer.build() if peers else (None, "not asked (--no-peers)")
    if binary is None:
        notes.append(f"gpushare-scheduler-extender not run: {why}")
    hami, why = hami_peer.build() if peers else (None, "not asked (--no-peers)")
    notes.append(f"HAMi's scheduler not run: {why}" if hami is None else f"HAMi's scheduler: {hami_peer.TURNED_OFF}")
    floor_proc, floor_url = extender_floor.spawn_floor()
    try:
        for size in sizes:
            work = workdir / f"ext{size}"
            work.mkdir(parents=True)
            beside = Beside(floor_url, binary, work, hami)
            try:
                run = extender_bench.measure_latency(size, pods, work, False, beside, beside.prepare)
            finally:
                beside.close()
            goal = ("ratio", 2.0) if size == EXTENDER_GOAL_NODES else None
            tessera, floor = run.tessera.round_trip, beside.floor.round_trip
            for verb in ("filter", "prioritize"):
                rows.append(Row(f"extender {verb}, {size:,} nodes", tessera[verb], "do-nothing extender",
                                floor[verb], goal))
            if len(tessera["prioritize"]) == len(tessera["filter"]) == len(floor["prioritize"]):
                rows.append(Row(f"extender filter+prioritize, {size:,} nodes",
                                [f + p for f, p in zip(tessera["filter"], tessera["prioritize"])],
                                "do-nothing extender", [f + p for f, p in zip(floor["filter"], floor["prioritize"])],
                                goal))
            sizes_seen = {"Tessera": run.tessera.answer_bytes["filter"], "floor": beside.floor.answer_bytes["filter"]}
            if beside.peer is not None:
                sizes_seen["gpushare"] = beside.peer.answer_bytes[gpushare_peer.FILTER_PATH]
                rows.append(Row(f"extender filter, {size:,} nodes", tessera["filter"], "gpushare filter",
                                beside.peer.round_trip[gpushare_peer.FILTER_PATH],
                                ("ratio", 0.1) if size == EXTENDER_GOAL_NODES else None))
            if beside.hami is not None:
                sizes_seen["HAMi"] = beside.hami.client.answer_bytes[hami_peer.FILTER_PATH]
                rows += hami_peer.rows(Row, size, tessera, beside.hami.client.round_trip[hami_peer.FILTER_PATH])
            notes.append(f"{size:,} nodes, filter answer bytes (median): " + ", ".join(
                f"{who} {statistics.median(seen):,.0f}" for who, seen in sizes_seen.items()))
    finally:
        floor_proc.terminate()
        floor_proc.wait(10)
    return rows, notes


# -- Allocate --------------------------------------------------------------------------------------

def _allocate_request(plugin, resource: str, count: int) -> api.AllocateRequest:
    """The kubelet's request for ``count`` devices of ``resource`` (the plugin's preferred ones)."""
    stub = plugin.stub(resource)
    available = list(plugin.manager.devices(resource))
    preferred = stub.GetPreferredAllocation(api.PreferredAllocationRequest(container_requests=[
        api.ContainerPreferredAllocationRequest(available_deviceIDs=available, allocation_size=count)]))
    ids = list(preferred.container_responses[0].deviceIDs) or available[:count]
    return api.AllocateRequest(container_requests=[api.ContainerAllocateRequest(devices_ids=ids)])


def allocate_rows(rounds: int) -> list[Row]:
    """Allocate for each kind of share against a gRPC echo answering the same bytes; calls interleaved."""
    rows = []
    for label, node, mode, resource, count in ALLOCATIONS:
        with deviceplugin_bench.running_plugin(node, mode, (resource,)) as plugin:
            request = _allocate_request(plugin, resource, count)
            stub = plugin.stub(resource)
            answer = stub.Allocate(request)
            echo_socket = plugin.root / "echo.sock"
            echo = allocate_floor.spawn_echo(echo_socket, answer)
            try:
                echo_stub = deviceplugin_grpc.DevicePluginStub(grpc.insecure_channel(f"unix://{echo_socket}"))
                tessera, floor = [], []
                calls = ((stub, tessera), (echo_stub, floor))
                for k in range(rounds + WARMUP):
                    for caller, times in calls if k % 2 else calls[::-1]:  # each goes first in turn
                        t0 = time.perf_counter()
                        caller.Allocate(request)
                        if k >= WARMUP:
                            times.append((time.perf_counter() - t0) * 1000)
            finally:
                echo.terminate()
                echo.wait(10)
        rows.append(Row(f"Allocate {label} ({resource}: {count})", tessera, "gRPC echo", floor, ("ratio", 2.0)))
    return rows


# -- NVIDIA's device plugin -----------------------------------------------------------------------

NVIDIA_PEER = "NVIDIA device plugin"


def nvidia_plugin_rows(rounds: int, starts: int, restarts: int, peers: bool = True,
                       find: bool = False) -> tuple[list[Row], list[str]]:
    """Tessera's device plugin against NVIDIA's on the same mock H100 node, interleaved (``find``: only
    peers already built). Also notes: what ran, each Allocate's answer, or why it did not run."""
    if not peers:
        return [], ["NVIDIA's device plugin not run: not asked (--no-peers)"]
    binary, mock, why = nvidia_plugin_peer.build(find)
    if binary is None:
        return [], [f"NVIDIA's device plugin not run: {why}"]
    figures = nvidia_plugin_peer.measure(binary, mock, rounds, starts, restarts)
    ours, theirs = figures["Tessera"], figures["NVIDIA"]

    def ms(seconds: list[float]) -> list[float]:
        return [s * 1000 for s in seconds]

    rows = [Row("mock H100: registration from start", ms(ours.registration), NVIDIA_PEER, ms(theirs.registration))]
    for label, _, resource, _ in nvidia_plugin_peer.SHARES:
        rows.append(Row(f"mock H100: Allocate {label} ({resource}: 1)", ms(ours.allocate[label]), NVIDIA_PEER,
                        ms(theirs.allocate[label])))
    rows.append(Row("mock H100: re-registration after kubelet restart", ms(ours.reregistration), NVIDIA_PEER,
                    ms(theirs.reregistration), ("ratio", 1.0)))
    notes = [f"device plugins on NVIDIA's mock NVML (H100 profile, 8 GPUs), each with its own simulated kubelet: "
             f"{starts} starts, {rounds} Allocates per share, {restarts} kubelet restarts, interleaved"]
    for label, *_ in nvidia_plugin_peer.SHARES:
        for who, fig in figures.items():
            env = fig.answer_envs[label]
            notes.append(f"Allocate {label}, {who}: asked {','.join(fig.asked[label])} -> NVIDIA_VISIBLE_DEVICES="
                         f"{env.get('NVIDIA_VISIBLE_DEVICES', '(none)')}")
    return rows, notes


# -- hook ------------------------------------------------------------------------------------------

def hook_rows(runs: int, workdir: Path) -> list[Row]:
    """The released hook (granted and unrelated containers) against a no-op hook and Python's start-up;
    one run of each in turn, ``runs`` times."""
    release = workdir / "release"
    hook = hook_floor.hook_release(release)
    (workdir / "containers").mkdir()
    flags, _, bundles = hook_bench.prepare(workdir / "containers")
    noop_name, noop = hook_floor.noop_hook(workdir / "noop")
    env = hook_floor.release_env(release)
    argv = {"granted": [str(hook), "createRuntime", *flags], "unrelated": [str(hook), "createRuntime", *flags],
            noop_name: noop, **hook_floor.python_startup(release)}
    bundle = {"granted": bundles["granted"]}
    times: dict[str, list[float]] = {name: [] for name in argv}
    for _ in range(runs + 2):  # the first two of each warm the page cache
        for name, command in argv.items():
            took, rc = hook_bench.time_hook(command, bundle.get(name, bundles["unrelated"]), 1, env)
            if rc != 0:
                raise RuntimeError(f"{name}: {' '.join(command)} exited {rc}")
            times[name].extend(s * 1000 for s in took)
    times = {name: t[2:] for name, t in times.items()}
    rows = [Row(f"hook (release), {kind} container", times[kind], noop_name, times[noop_name], ("added", 40.0))
            for kind in ("granted", "unrelated")]
    for name in hook_floor.python_startup(release):
        rows.append(Row("hook (release), granted container", times["granted"], f"{name} (release's)", times[name]))
    return rows


# -- the table -------------------------------------------------------------------------------------

def machine() -> str:
    """Date, CPU model, cores, Python and commit of this run."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {model}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
            f"Python {platform.python_version()}; commit {commit}")


def render(rows: list[Row], note: str) -> str:
    """The table of rows, titled with ``note``."""
    return render_table(HEADERS, [row.cells() for row in rows], title=note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="extender node counts")
    parser.add_argument("--pods", type=int, default=200, help="extender scheduling cycles per node count")
    parser.add_argument("--rounds", type=int, default=300, help="Allocate calls per kind of share")
    parser.add_argument("--runs", type=int, default=40, help="hook runs per container kind and floor")
    parser.add_argument("--starts", type=int, default=10, help="device plugin starts (registration) per plugin")
    parser.add_argument("--restarts", type=int, default=50, help="kubelet restarts (re-registration) per plugin")
    parser.add_argument("--quick", action="store_true", help="a short run: 200 and 1,000 nodes, 30 cycles, "
                                                             "100 Allocates, 10 hook runs, 2 plugin starts and "
                                                             "5 kubelet restarts")
    parser.add_argument("--only", default="extender,allocate,hook,nvidia-plugin", help="which paths to run")
    parser.add_argument("--no-peers", action="store_true",
                        help="leave gpushare-scheduler-extender and NVIDIA's device plugin out")
    parser.add_argument("--no-build", action="store_true",
                        help="run only the peers already built (NVIDIA's device plugin and its mock NVML)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.pods, args.rounds, args.runs = "200,1000", 30, 100, 10
        args.starts, args.restarts = 2, 5
    paths = set(args.only.split(","))
    configure_logging("error", "json", stream=open(os.devnull, "w"))  # noqa: SIM115
    header = machine()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"tessera-compare-{uuid.uuid4().hex[:6]}-") as tmp:
        work = Path(tmp)
        if "extender" in paths:
            more, ext_notes = extender_rows([int(s) for s in args.sizes.split(",")], args.pods, work,
                                            not args.no_peers)
            rows += more
            notes += ext_notes
        if "allocate" in paths:
            rows += allocate_rows(args.rounds)
        if "nvidia-plugin" in paths:
            more, plugin_notes = nvidia_plugin_rows(args.rounds, args.starts, args.restarts, not args.no_peers,
                                                    args.no_build)
            rows += more
            notes += plugin_notes
        if "hook" in paths:
            if os.geteuid() == 0:
                rows += hook_rows(args.runs, work)
            else:
                print("compare: the hook rows need root (fake device nodes are made with mknod)", file=sys.stderr)
    print(render(rows, f"Tessera against its floors, one run: {header}. Extender: {args.pods} cycles per node "
                       f"count, round trips; Allocate: {args.rounds} calls each; hook: {args.runs} runs each, "
                       "interleaved. Ratio = Tessera / floor (or peer)."))
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
