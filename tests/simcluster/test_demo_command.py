"""``tessera demo``: the README's first command runs the embedded cluster and says what happened;
``--keep`` leaves it up for kubectl until SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESSERA = [sys.executable, "-m", "tessera_cli.main"]
HANG_GUARD_S = 900  # the demo waits on its daemons while they progress; this only stops a hung test


def _table(out: str, title: str) -> list[str]:
    """The rows of the table printed under ``title`` (after its header and rule lines)."""
    lines = out[out.index(title):].splitlines()
    rows = []
    for line in lines[3:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def _stable(out: str) -> list[str]:
    """What must be the same run after run: pod placements and the fault's reactions, without timings,
    ports and the Prometheus port."""
    # A row's own line (a long cell continues on lines that start blank: a hook's message names a temp dir).
    pods = [" ".join(r.split()[:4]) for r in _table(out, "Pods (") if not r[0].isspace()]
    fault = [" ".join(re.sub(r"\s+([0-9]+\.[0-9]+|not seen)\s*$", "", r).split()) for r in _table(out, "Fault: ")]
    assert fault and not any(r.endswith("not seen") for r in _table(out, "Fault: "))
    return pods + fault


def test_demo_runs_twice_with_the_same_result(tmp_path):
    runs = []
    for i in range(2):
        png = tmp_path / f"occupancy-{i}.png"
        result = subprocess.run([*TESSERA, "demo", "--png", str(png)], capture_output=True, text=True,
                                timeout=HANG_GUARD_S, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        runs.append(result)
        _check_demo_output(result)
    assert _stable(runs[0].stdout) == _stable(runs[1].stdout)


def _check_demo_output(result) -> None:
    out = result.stdout
    for node in ("a100-whole", "h100-mig", "a100-mps", "t4-timeslice"):
        assert node in out
    assert "NVIDIA H100 80GB HBM3" in out and "3g.40gb" in out       # read through the NVML layer
    assert "[10/10]" in result.stderr and "done" in result.stderr      # progress while it runs
    assert "tessera-extender (its own process)" in result.stderr
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    # Each kind of GPU pod passed the webhook and the extender, and holds what it asked for on its node.
    assert "core 50% 8 GiB" in rows["mps-50-8"] and "core 30% 20 GiB" in rows["mps-30-20"]
    assert "core 200% 160 GiB" in rows["mps-200"] and rows["mps-200"].count("GPU-") == 2
    assert "mps-memory=20" in rows["mps-25-auto"] and "core 25% 20 GiB" in rows["mps-25-auto"]  # completed
    assert "denied the request" in rows["memory-without-cores"]                                  # refused
    assert rows["two-whole-gpus"].count("GPU-") == 2 and "MIG-" in rows["mig-3g"] and "GPU-" in rows["timesliced"]
    node_row = next(line for line in out.splitlines() if line.startswith("a100-mps") and "Ready" in line)
    assert "nvidia.com/mps-core=800" in node_row and "nvidia.com/mps-memory=640" in node_row
    exporters = out[out.index("Exporters"):].splitlines()[3:7]
    assert len(exporters) == 4 and all("http://127.0.0.1:" in row for row in exporters)
    assert "8/8" in next(row for row in exporters if row.startswith("h100-mig"))   # healthy GPUs as scraped
    failures = [line for line in result.stderr.splitlines() if "container_failed" in line]
    pods = ("two-whole-gpus", "mig-3g", "mig-1g", "mps-50-8", "mps-30-20", "mps-25-auto", "mps-200", "timesliced",
            "cpu-a100-mps",
            "cpu-a100-whole", "cpu-h100-mig", "cpu-t4-timeslice", "cuda-image-cpu-pod")
    assert all(" Running " in rows[p] and " 1/1 " in rows[p] for p in pods), (out, failures)
    assert not failures
    if shutil.which("runc") and os.geteuid() == 0:
        # The pod that mounts a GPU device node without a grant is stopped by tessera-hook.
        # restartPolicy Never: failed at start (containerd's StartError), READY 0/1, the hook's line as the event
        line = next(line for line in out.splitlines() if line.startswith("gpu-without-a-grant"))
        assert " Failed " in line and " 0/1 " in line and "tessera-hook" in line


def _example_pods_run(kubeconfig: str) -> None:
    """deploy/examples' whole-GPU and MIG pods (nvidia-smi -L, restartPolicy Never) complete on the kept
    cluster, and kubectl shows what happened: Completed, READY 0/1, the granted GPU in their logs."""
    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], input=stdin, capture_output=True,
                              text=True, timeout=HANG_GUARD_S)

    examples = Path(__file__).resolve().parents[2] / "deploy" / "examples"
    for name in ("pod-gpu-whole.yaml", "pod-mig.yaml"):
        body = (examples / name).read_text().replace("namespace: team-a", "namespace: default")
        created = kubectl("create", "--validate=false", "-f", "-", stdin=body)
        assert created.returncode == 0, created.stderr
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        rows = {r.split()[0]: r.split()[1:3] for r in kubectl("get", "pods", "--no-headers").stdout.splitlines()}
        if all(rows.get(p, ["", ""])[1] in ("Completed", "Error", "StartError") for p in ("gpu-whole", "mig-1g10gb")):
            break
        time.sleep(0.5)
    assert rows["gpu-whole"] == ["0/1", "Completed"] and rows["mig-1g10gb"] == ["0/1", "Completed"], rows
    whole = kubectl("logs", "gpu-whole").stdout
    assert re.fullmatch(r"GPU 0: NVIDIA A100-SXM4-80GB \(UUID: GPU-[0-9a-f-]+\)\n", whole), whole
    mig = kubectl("logs", "mig-1g10gb").stdout.splitlines()
    assert mig[0].startswith("GPU 0: NVIDIA H100 80GB HBM3"), mig
    assert re.match(r"\s+MIG 1g\.10gb\s+Device\s+0: \(UUID: MIG-", mig[1]), mig


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_demo_keep_serves_kubectl_until_sigterm():
    proc = subprocess.Popen([*TESSERA, "demo", "--keep"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        kubeconfig = None
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("export KUBECONFIG="):
                kubeconfig = line.strip().split("=", 1)[1]
                break
            assert line, "the demo ended before printing the kubeconfig"
        assert kubeconfig and Path(kubeconfig).exists()
        got = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name"],
                             capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert got.returncode == 0, got.stderr
        assert sorted(got.stdout.split()) == ["node/a100-mps", "node/a100-whole", "node/h100-mig",
                                              "node/t4-timeslice"]
        if shutil.which("runc") and os.geteuid() == 0:
            _example_pods_run(kubeconfig)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=HANG_GUARD_S) == 0
        assert not Path(kubeconfig).exists(), "the demo left its working directory behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
