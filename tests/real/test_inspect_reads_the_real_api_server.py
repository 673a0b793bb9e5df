"""``tessera inspect`` through the admin's kubeconfig of the real API server shows each node's GPUs in
their mode and who holds which share."""

from __future__ import annotations

import json
import subprocess
import sys

from realtier import pod, wait_running
from tessera.daemonproc import REPO_ROOT


def test_inspect_shows_the_nodes_gpus_and_a_running_share(real_cluster, namespace):
    real_cluster.apply([pod("held", {"nvidia.com/mps-core": 20, "nvidia.com/mps-memory": 4}, namespace=namespace)])
    wait_running(real_cluster.core_v1(), namespace, "held")
    done = subprocess.run([sys.executable, "-m", "tessera_cli.main", "inspect", "--kubeconfig",
                           str(real_cluster.kubeconfig), "-o", "json"], capture_output=True, text=True,
                          cwd=str(REPO_ROOT), timeout=120)
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    # The simulated nodes (the real node, where a test started it, is the real-node tests' business).
    modes = {n["name"]: {g["mode"] for g in n["gpus"]} for n in view["nodes"] if n["name"] != "real-node-1"}
    assert modes == {"a100-whole": {"exclusive"}, "h100-mig": {"mig"}, "a100-mps": {"mps"},
                     "t4-timeslice": {"timeslice"}}
    held = [(h, g) for n in view["nodes"] for g in n["gpus"] for h in g["holders"] if h["pod"].endswith("held")]
    assert [(h["state"], h["core_pct"], h["memory_gib"]) for h, _ in held] == [("allocated", 20, 4)]
