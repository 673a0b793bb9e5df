"""The same pods on a simulated kubelet and on the real one (kubelet v1.37.2, containerd 2.4, runc):
what a user and Tessera see must agree. For each scenario the pod runs once on a simulated node of the
embedded description (its containers run for real under runc past tessera-hook) and once on the real
node, and the two are compared after normalising names, IDs and times:

- the pod's phase and reason, its conditions, each container's state, reason, exit code and whether
  it was restarted;
- the Events about it, by reason and reporting component, in the order they first appear;
- the device plugin's calls for it: GetPreferredAllocation then Allocate per resource (the plugin's
  log; the resources of one container come in Go's map order, random in both);
- the hook's line where it refused the container.

README.md lists what still differs (what a simulated kubelet does not do at all)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from gpunode import IMAGE as REAL_IMAGE, MPS_USER as REAL_MPS_USER, NODE as REAL_NODE, TOLERATION
from realcluster.nodeside import log_events
from realtier import GPU_IMAGE, events_for, read_pod, wait_for


@dataclass(frozen=True)
class Scenario:
    containers: tuple[tuple[str, dict, str], ...]   # (name, limits, shell command)
    restart_policy: str = "Never"
    mps: bool = False
    env: tuple[tuple[str, str], ...] = ()
    crash_loop: bool = False   # wait for the first back-off (a state that lasts 10 s), not for the end


WHOLE = {"nvidia.com/gpu": 1}
SHARE = {"nvidia.com/mps-core": 30, "nvidia.com/mps-memory": 8}
SCENARIOS = {
    "completes": Scenario((("main", WHOLE, "true"),)),
    "exits-3": Scenario((("main", WHOLE, "exit 3"),)),
    "two-containers": Scenario((("first", WHOLE, "true"), ("second", WHOLE, "true"))),
    "mps-share": Scenario((("main", SHARE, "true"),), mps=True),
    "hook-refuses": Scenario((("main", SHARE, "true"),), mps=True,
                             env=(("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "100"),)),
    "restarts-on-failure": Scenario((("main", WHOLE, "exit 1"),), restart_policy="OnFailure", crash_loop=True),
}


def _pod(name: str, namespace: str, scenario: Scenario, *, real: bool) -> dict:
    node = REAL_NODE if real else ("a100-mps" if scenario.mps else "a100-whole")
    containers = [{"name": c, "image": REAL_IMAGE if real else GPU_IMAGE, "imagePullPolicy": "Never",
                   "command": ["sh", "-c", command], "env": [{"name": k, "value": v} for k, v in scenario.env],
                   "resources": {"limits": {k: str(v) for k, v in limits.items()}}}
                  for c, limits, command in scenario.containers]
    spec = {"restartPolicy": scenario.restart_policy, "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": containers}
    if real:
        spec.update(hostNetwork=True, tolerations=[TOLERATION])
    if scenario.mps:
        spec["securityContext"] = {"runAsUser": REAL_MPS_USER if real else os.getuid()}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _plugin_calls(log_path, offset: int) -> list[tuple[str, str]]:
    """(call, resource) in order, from the plugin's log after ``offset``."""
    return [(e["event"], e["resource"]) for e in log_events(log_path, offset)
            if e.get("event") in ("preferred_allocation", "allocated")]


def _call_units(calls: list[tuple[str, str]]) -> list[tuple[str, tuple[str, ...]]]:
    """The calls as (resource, its calls in order) per stretch of one resource, sorted: the kubelet visits
    a container's resources in Go's map order (random in both kubelets), one resource's calls in order."""
    units: list[tuple[str, list[str]]] = []
    for call, resource in calls:
        if units and units[-1][0] == resource and call not in units[-1][1]:
            units[-1][1].append(call)
        else:
            units.append((resource, [call]))
    return sorted((resource, tuple(seq)) for resource, seq in units)


def _shape(pod: dict, events: list[dict], calls: list[tuple[str, str]]) -> dict:
    status = pod["status"]
    containers = {}
    for c in status.get("containerStatuses") or []:
        state_key, state = next(iter((c.get("state") or {"none": {}}).items()))
        last = (c.get("lastState") or {}).get("terminated") or {}
        containers[c["name"]] = {"state": state_key, "reason": state.get("reason"), "exitCode": state.get("exitCode"),
                                 "restarts": c.get("restartCount", 0), "lastExitCode": last.get("exitCode")}
    images = {c["image"] for c in pod["spec"]["containers"]}
    pod_ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
    hook = sorted({e["message"][e["message"].index("tessera-hook:"):].replace(pod_ref, "<pod>").strip()
                   for e in events if "tessera-hook:" in e["message"]})
    seen = []
    for e in events:
        message = e["message"]
        for image in images:
            message = message.replace(image, "<image>")
        # The kubelet's own Normal events are compared word for word; the scheduler's names the node, and
        # a failure's wording is the runtime's (containerd wraps runc's; the hook's line is in both).
        key = (e["reason"], e["source"] or "kubelet", message if e["source"] == "kubelet" and
               e["reason"] in ("Pulled", "Created", "Started") else "")
        if key not in seen:
            seen.append(key)
    return {"phase": status.get("phase"), "reason": status.get("reason"),
            "conditions": {c["type"]: c["status"] for c in status.get("conditions") or []},
            "containers": containers, "events": seen, "calls": _call_units(calls), "hook": hook}


def _run(cluster, namespace: str, name: str, scenario: Scenario, log_path, real: bool) -> dict:
    core = cluster.core_v1()
    offset = log_path.stat().st_size
    cluster.apply([_pod(name, namespace, scenario, real=real)])

    def done():
        pod = read_pod(core, namespace, name)
        if not pod:
            return None
        if scenario.crash_loop:
            statuses = pod["status"].get("containerStatuses") or []
            waiting = statuses and (statuses[0].get("state") or {}).get("waiting") or {}
            return waiting.get("reason") == "CrashLoopBackOff" and pod
        return pod["status"].get("phase") in ("Succeeded", "Failed") and pod

    pod = wait_for(done, f"pod {namespace}/{name} at the scenario's end", timeout_s=180)
    return _shape(pod, events_for(core, namespace, name), _plugin_calls(log_path, offset))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_simulated_kubelet_does_what_the_real_one_does(gpu_node, real_cluster, namespace, scenario):
    if real_cluster.nodes["a100-whole"].kubelet.runner is None:
        pytest.skip("the simulated nodes run no containers here (runc, busybox and root needed)")
    plan = SCENARIOS[scenario]
    sim_node = "a100-mps" if plan.mps else "a100-whole"
    simulated = _run(real_cluster, namespace, "sim", plan, real_cluster.plugins.args[sim_node][2], real=False)
    real = _run(real_cluster, namespace, "real", plan, gpu_node.plugin.log_path, real=True)
    differences = {k: {"simulated": simulated[k], "real": real[k]} for k in real if simulated[k] != real[k]}
    assert not differences, json.dumps(differences, indent=1)
