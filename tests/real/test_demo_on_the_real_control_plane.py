"""``tessera demo --control-plane real``, run as a user runs it: the demo's pods of each kind are placed by
deploy/'s tessera-scheduler kube-scheduler through the extender, admitted through the device plugins and
running; the webhook's refusal comes back from the real API server; every part reacts to the Xid, and the
pod that no longer fits gets the real kube-scheduler's FailedScheduling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from leftovers import stop_holder
from realcluster.binaries import KUBE_VERSION
from realtier import binaries_or_skip

TESSERA = [sys.executable, "-m", "tessera_cli.main"]
HANG_GUARD_S = 900  # the demo waits on its daemons while they progress; this only stops a hung test
# The demo's GPU pods, one of each kind, and the node of the mode each needs.
PLACED = {"two-whole-gpus": "a100-whole", "mig-3g": "h100-mig", "mig-1g": "h100-mig", "mps-50-8": "a100-mps",
          "mps-30-20": "a100-mps", "mps-25-auto": "a100-mps", "mps-200": "a100-mps", "timesliced": "t4-timeslice"}
GPU_PODS = tuple(PLACED)
CPU_PODS = ("cpu-a100-mps", "cpu-a100-whole", "cpu-h100-mig", "cpu-t4-timeslice", "cuda-image-cpu-pod")


def _table(out: str, title: str) -> list[str]:
    """The rows of the table printed under ``title`` (after its title, header and rule lines); a cell's
    wrapped continuation (a line whose first column is blank) is joined to its row."""
    rows: list[str] = []
    for line in out[out.index(title):].splitlines()[3:]:
        if not line.strip():
            break
        if line[:1].isspace() and rows:
            rows[-1] += " " + line.strip()
        else:
            rows.append(line)
    return rows


def _printed(out: str, prefix: str) -> str:
    """The rest of the first line printed with ``prefix``."""
    return next(line for line in out.splitlines() if line.startswith(prefix))[len(prefix):]


def _run_kept(argv: list[str], stderr_path) -> tuple[subprocess.Popen, str]:
    """Start the demo with ``--keep``; its process and what it printed until it says the cluster stays up
    (all of it, where it ended first)."""
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=stderr_path.parent)
    lines = []
    for line in proc.stdout:   # ends when the demo ends; the demo's own waits end on its daemons' progress
        lines.append(line)
        if line.startswith("Ctrl-C or SIGTERM stops it"):
            break
    return proc, "".join(lines)


def test_demo_runs_on_the_real_control_plane(tmp_path):
    binaries_or_skip()
    png = tmp_path / "occupancy.png"
    proc, out = _run_kept([*TESSERA, "demo", "--control-plane", "real", "--keep", "--png", str(png)],
                          tmp_path / "stderr.txt")
    try:
        err = (tmp_path / "stderr.txt").read_text()
        assert "Ctrl-C or SIGTERM stops it" in out, (proc.poll(), err[-3000:])
        _check_tables(out, err, png)
        _check_with_kubectl(out)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=HANG_GUARD_S) == 0
        assert not Path(_printed(out, "export KUBECONFIG=")).exists(), "the demo left its working directory behind"
    finally:   # a check failed: stop it as its user does, so its control plane goes too
        stop_holder(proc, grace_s=HANG_GUARD_S)


def _check_with_kubectl(out: str) -> None:
    """What a user reaches with the printed kubectl and kubeconfig: the pinned release, and the GPU pods
    routed by the webhook to deploy/'s tessera-scheduler and bound by it."""
    kubeconfig = _printed(out, "export KUBECONFIG=")
    kubectl = _printed(out, "# kubectl ").split()[0]

    def run(*args: str) -> str:
        done = subprocess.run([kubectl, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True,
                              timeout=HANG_GUARD_S)
        assert done.returncode == 0, done.stderr
        return done.stdout
    assert json.loads(run("version", "-o", "json"))["serverVersion"]["gitVersion"] == KUBE_VERSION
    pods = {p["metadata"]["name"]: p for p in json.loads(run("get", "pods", "-o", "json"))["items"]}
    assert {p: pods[p]["spec"]["schedulerName"] for p in GPU_PODS} == {p: "tessera-scheduler" for p in GPU_PODS}
    assert {pods[p]["spec"]["schedulerName"] for p in CPU_PODS} == {"default-scheduler"}
    events = json.loads(run("get", "events", "--field-selector", "reason=Scheduled", "-o", "json"))["items"]
    by = {e["involvedObject"]["name"]: e.get("reportingComponent") or (e.get("source") or {}).get("component")
          for e in events}
    assert {p: by.get(p) for p in GPU_PODS} == {p: "tessera-scheduler" for p in GPU_PODS}, by


def _check_tables(out: str, err: str, png: Path) -> None:
    """What the demo printed: its steps, and each table as a user reads it."""
    assert "the real control plane" in err and "[10/10]" in err
    assert "the tessera-scheduler kube-scheduler" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    nodes = {r.split()[0]: r for r in _table(out, "Nodes (from the API server)")}
    assert sorted(nodes) == ["a100-mps", "a100-whole", "h100-mig", "t4-timeslice"]
    assert all(" Ready " in row for row in nodes.values()), nodes
    assert "nvidia.com/mps-core=800" in nodes["a100-mps"]

    pods = {r.split()[0]: r for r in _table(out, "Pods (")}
    # Each kind of GPU pod was placed on its node and holds what it asked for; every pod runs.
    assert [p for p in GPU_PODS if f" {PLACED[p]} " not in pods[p]] == [], pods   # its NODE column
    assert [p for p in GPU_PODS + CPU_PODS if " Running " not in pods[p] or " 1/1 " not in pods[p]] == [], out
    assert pods["two-whole-gpus"].count("GPU-") == 2 and "MIG-" in pods["mig-3g"] and "MIG-" in pods["mig-1g"]
    assert "core 50% 8 GiB" in pods["mps-50-8"] and "core 30% 20 GiB" in pods["mps-30-20"]
    assert "core 200% 160 GiB" in pods["mps-200"] and pods["mps-200"].count("GPU-") == 2
    # mps-25-auto asked mps-core only: the webhook completed its mps-memory.
    assert "mps-memory=20" in pods["mps-25-auto"] and "core 25% 20 GiB" in pods["mps-25-auto"]
    assert "GPU-" in pods["timesliced"]
    refused = _table(out, "Refused by the admission webhook")
    assert refused and refused[0].startswith("memory-without-cores")
    assert 'admission webhook "pods.tessera.io" denied the request' in refused[0]
    if shutil.which("runc") and os.geteuid() == 0:
        # A pod mounting a GPU device node without a grant is stopped by tessera-hook under runc.
        assert " Failed " in pods["gpu-without-a-grant"] and "tessera-hook" in pods["gpu-without-a-grant"]

    fault = _table(out, "Fault: Xid 79")
    # Each part reacted: the device plugin (allocatable, inventory), the extender, the exporter, Prometheus
    # where installed, and the scheduling of the two pods created after the Xid.
    parts = [r.split()[0] for r in fault]
    assert (parts.count("device"), parts.count("extender"), parts.count("exporter"), parts.count("scheduling")) == (
        2, 1, 1, 2), fault
    assert parts.count("prometheus") == (2 if "Prometheus (http" in out else 0), fault
    assert not [r for r in fault if r.rstrip().endswith("not seen")], fault
    assert "placed on 5 healthy GPUs, not the failed one" in fault[-1]
    assert " Running " in pods["gpus-5-after-xid"] and " Pending " in pods["gpus-6-after-xid"]
    # The too-large pod's reason comes from the real kube-scheduler's own fit of the node's allocatable.
    reason = next(line for line in out.splitlines() if line.startswith("gpus-6-after-xid: FailedScheduling:"))
    assert "0/4 nodes are available" in reason and "Insufficient nvidia.com/gpu" in reason
    assert "Done in" in out and "Deleted pod gpus-5-after-xid" in out   # --keep frees its GPUs for the user
