"""A pod of each kind, written as a user writes it (no scheduler named), is routed by the webhook to
the tessera-scheduler kube-scheduler of deploy/, placed through the extender's filter, prioritize and
bind, admitted by its node's kubelet with the device plugin's answer, and runs."""

from __future__ import annotations

import json

import pytest

from realtier import events_for, pod, wait_for, wait_running
from tessera import ANNOTATION_ASSIGNMENT
from tessera.assignment import read_assignment

KINDS = {  # pod name: (limits, the node of that mode, how many devices the container sees)
    "whole": ({"nvidia.com/gpu": 1}, "a100-whole", 1),
    "two-whole": ({"nvidia.com/gpu": 2}, "a100-whole", 2),
    "mig": ({"nvidia.com/mig-1g.10gb": 1}, "h100-mig", 1),
    "mps-share": ({"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 8}, "a100-mps", 1),
    "mps-whole-gpus": ({"nvidia.com/mps-core": 200}, "a100-mps", 2),
    "timesliced": ({"nvidia.com/gpu.shared": 1}, "t4-timeslice", 1),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_pod_is_scheduled_by_the_real_scheduler_through_the_extender_and_runs(real_cluster, namespace, kind):
    limits, node, devices = KINDS[kind]
    core = real_cluster.core_v1()
    real_cluster.apply([pod(kind, limits, namespace=namespace, command=["sh", "-c", "nvidia-smi -L; sleep 3600"])])
    running = wait_running(core, namespace, kind)

    assert running["spec"]["schedulerName"] == "tessera-scheduler"    # the webhook routed it
    assert running["spec"]["nodeName"] == node
    doc, signature = read_assignment(running["metadata"]["annotations"][ANNOTATION_ASSIGNMENT])
    assert signature is not None and doc.written_by == "extender"      # the extender's bind signed it
    assert doc.node == node and doc.pod_uid == running["metadata"]["uid"]
    scheduled = [e for e in events_for(core, namespace, kind) if e["reason"] == "Scheduled"]
    assert scheduled and scheduled[0]["source"] in ("tessera-scheduler", ""), scheduled
    assert f"to {node}" in scheduled[0]["message"]

    kubelet = real_cluster.nodes[node].kubelet
    if kubelet.runner is None:
        pytest.skip("containers do not run for real here (runc, busybox and root needed): scheduling checked only")
    # Under runc, past tessera-hook: the container sees exactly what it was granted.
    config = json.loads((kubelet.bundle_path(running["metadata"]["uid"], "main") / "config.json").read_text())
    visible = dict(e.split("=", 1) for e in config["process"]["env"])["NVIDIA_VISIBLE_DEVICES"].split(",")
    log, _ = kubelet.pods.log_source(namespace, kind, "main", False)
    listed = wait_for(lambda: log.read_text().count("UUID: ") and log.read_text(), f"nvidia-smi -L in {kind}")
    assert all(f"UUID: {uuid})" in listed for uuid in visible), (visible, listed)
    assert len(visible) == devices
