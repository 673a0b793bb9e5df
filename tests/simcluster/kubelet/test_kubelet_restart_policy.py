"""The simulated kubelet follows ``restartPolicy`` as the real one does.

- ``Always``: a container that exits is restarted (``restartCount`` counts it, ``lastState`` keeps the
  exit, ``CrashLoopBackOff`` between restarts); the pod stays Running and keeps its devices, as the
  pod-resources API shows.
- ``OnFailure``: restarted after a non-zero exit; Succeeded after a zero one (devices freed).
- ``Never``: Succeeded or Failed with the first exit; a failed container shows READY 0/1, its state
  terminated with reason and exit code.
- Under runc, a container whose executable is missing fails to start (containerd's ``StartError``, exit
  code 128) with a ``Failed`` event naming it, and ``kubectl logs`` agrees; a GPU container gets
  ``nvidia-smi`` as NVIDIA's toolkit gives it one, listing only the GPUs it was granted.

Containers run simulated (``simcluster.tessera.io/run-seconds`` and ``/exit-code``), except under runc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import grpc
import kubernetes
import pytest

from simcluster.apiserver import ApiServer
from simcluster.cluster import NodeSpec
from simcluster.kubelet.runtime import unavailable
from simcluster.kubelet.simkubelet import SimKubelet
from tessera.kubeletapi import podresources_grpc, podresources_pb2

RESOURCE = "example.com/gpu"
FAST_BACKOFF = (0.3, 1.2)   # the kubelet's 10 s .. 5 min back-off, scaled down for a test
WAIT_S = 120.0               # a hang guard: each wait ends on the state it waits for


@pytest.fixture
def node(api, node_dir, start_plugin, eventually):
    """A started kubelet with a fake plugin serving three devices, and a client."""
    kubelet = SimKubelet(NodeSpec(name="gpu-node", model="T4", gpus=3), api.url, Path(node_dir),
                         status_delay_s=0.05, restart_backoff_s=FAST_BACKOFF)
    kubelet.start()
    v1 = client(api)
    start_plugin("GPU-0,GPU-1,GPU-2")
    eventually(lambda: v1.read_node("gpu-node").status.capacity.get(RESOURCE) == "3", WAIT_S, "capacity 3")
    yield kubelet, v1
    kubelet.stop()


def client(api: ApiServer) -> kubernetes.client.CoreV1Api:
    configuration = kubernetes.client.Configuration()
    configuration.host = api.url
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


def job(name: str, policy: str | None, run_seconds: float | None = None, exit_code: int = 0, gpus: int = 1,
        command: list[str] | None = None) -> dict:
    annotations = {}
    if run_seconds is not None:
        annotations = {"simcluster.tessera.io/run-seconds": str(run_seconds),
                       "simcluster.tessera.io/exit-code": str(exit_code)}
    spec: dict = {"nodeName": "gpu-node", "containers": [{
        "name": "main", "image": "busybox", "command": command or ["sh", "-c", "true"],
        "resources": {"limits": {RESOURCE: str(gpus)}} if gpus else {}}]}
    if policy:
        spec["restartPolicy"] = policy
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations}, "spec": spec}


def held_devices(node_dir: str, pod: str) -> list[str]:
    """What the kubelet's pod-resources API says the pod holds."""
    with grpc.insecure_channel(f"unix://{os.path.join(node_dir, 'pod-resources', 'kubelet.sock')}") as channel:
        listed = podresources_grpc.PodResourcesListerStub(channel).List(
            podresources_pb2.ListPodResourcesRequest(), timeout=30).pod_resources
    return sorted(d for p in listed if p.name == pod for c in p.containers for dev in c.devices
                  for d in dev.device_ids)


def main_status(v1, name: str):
    statuses = v1.read_namespaced_pod(name, "default").status.container_statuses or []
    return statuses[0] if statuses else None


def restarts(v1, name: str) -> int:
    status = main_status(v1, name)
    return status.restart_count if status else 0


def events(v1, name: str) -> list[tuple[str, str, str]]:
    items = v1.list_namespaced_event("default", field_selector=f"involvedObject.name={name}").items
    return [(e.type, e.reason, e.message) for e in items]


def test_always_restarts_an_exited_container_and_keeps_its_devices(node, node_dir, eventually):
    kubelet, v1 = node
    v1.create_namespaced_pod("default", job("server", None, run_seconds=0.2, exit_code=0))  # Always by default
    eventually(lambda: restarts(v1, "server") >= 3, WAIT_S, "three restarts")
    pod = v1.read_namespaced_pod("server", "default")
    assert pod.spec.restart_policy == "Always"
    assert pod.status.phase == "Running"                  # never Succeeded by a container's exit
    status = pod.status.container_statuses[0]
    assert status.last_state.terminated.exit_code == 0 and status.last_state.terminated.reason == "Completed"
    assert held_devices(node_dir, "server") == ["GPU-0"]  # its GPU is kept across the restarts
    # The device is still held: a pod asking for all three is refused by the kubelet's device manager.
    v1.create_namespaced_pod("default", job("greedy", "Never", gpus=3))
    eventually(lambda: v1.read_namespaced_pod("greedy", "default").status.phase == "Failed", WAIT_S,
               "the pod asking for every device to be refused")
    assert v1.read_namespaced_pod("greedy", "default").status.reason == "UnexpectedAdmissionError"
    reasons = [r for _, r, _ in events(v1, "server")]
    assert reasons.count("Started") >= 4 and "BackOff" in reasons


def test_always_shows_crash_loop_back_off_between_restarts_of_a_failing_container(node, eventually):
    _, v1 = node
    v1.create_namespaced_pod("default", job("crasher", "Always", run_seconds=0.05, exit_code=2))

    def backing_off():
        status = main_status(v1, "crasher")
        waiting = status and status.state.waiting
        return waiting and waiting.reason == "CrashLoopBackOff" and status
    status = eventually(backing_off, WAIT_S, "CrashLoopBackOff")
    assert status.ready is False and status.restart_count >= 1
    assert status.last_state.terminated.exit_code == 2 and status.last_state.terminated.reason == "Error"
    assert "restarting failed container=main pod=crasher_default(" in status.state.waiting.message
    assert v1.read_namespaced_pod("crasher", "default").status.phase == "Running"


def test_on_failure_restarts_a_failed_container_and_succeeds_after_a_clean_exit(node, node_dir, eventually):
    _, v1 = node
    v1.create_namespaced_pod("default", job("retry", "OnFailure", run_seconds=0.2, exit_code=1))
    eventually(lambda: restarts(v1, "retry") >= 1, WAIT_S, "a restart after the failure")
    pod = v1.read_namespaced_pod("retry", "default")
    assert pod.status.phase == "Running" and held_devices(node_dir, "retry") == ["GPU-0"]

    v1.create_namespaced_pod("default", job("clean", "OnFailure", run_seconds=0.2, exit_code=0))
    eventually(lambda: v1.read_namespaced_pod("clean", "default").status.phase == "Succeeded", WAIT_S,
               "the cleanly exiting pod to succeed")
    status = main_status(v1, "clean")
    assert status.restart_count == 0 and status.state.terminated.reason == "Completed"
    eventually(lambda: held_devices(node_dir, "clean") == [], WAIT_S, "its device to be freed")


def test_never_fails_a_failed_container_with_ready_0_of_1_and_its_reason(node, node_dir, eventually):
    _, v1 = node
    v1.create_namespaced_pod("default", job("once", "Never", run_seconds=0.2, exit_code=3))
    eventually(lambda: v1.read_namespaced_pod("once", "default").status.phase == "Failed", WAIT_S, "Failed")
    pod = v1.read_namespaced_pod("once", "default")
    status = pod.status.container_statuses[0]
    assert status.ready is False and status.restart_count == 0           # READY 0/1, not restarted
    assert status.state.terminated.exit_code == 3 and status.state.terminated.reason == "Error"
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert ready.status == "False" and ready.reason == "PodCompleted"
    eventually(lambda: held_devices(node_dir, "once") == [], WAIT_S, "its device to be freed")

    v1.create_namespaced_pod("default", job("done", "Never", run_seconds=0.2, exit_code=0))
    eventually(lambda: v1.read_namespaced_pod("done", "default").status.phase == "Succeeded", WAIT_S, "Succeeded")


def test_deleting_a_restarting_pod_stops_its_restarts_and_frees_its_devices(node, node_dir, eventually):
    _, v1 = node
    v1.create_namespaced_pod("default", job("looping", "Always", run_seconds=0.1, exit_code=1))
    eventually(lambda: restarts(v1, "looping") >= 1, WAIT_S, "a restart")
    v1.delete_namespaced_pod("looping", "default")
    eventually(lambda: not [p for p in v1.list_namespaced_pod("default").items if p.metadata.name == "looping"],
               WAIT_S, "the pod gone")
    eventually(lambda: held_devices(node_dir, "looping") == [], WAIT_S, "its device freed")


# Under runc: what the demo's example pods run, for real ---------------------------------------------------

runc_missing = unavailable("runc") or (None if shutil.which("busybox") else "busybox is not installed")


@pytest.fixture
def runc_node(api, node_dir, start_plugin, eventually):
    """A kubelet running containers under runc, with tessera-hook (which lets pods without a grant be)."""
    kubelet = SimKubelet(NodeSpec(name="gpu-node", model="T4", gpus=3), api.url, Path(node_dir),
                         status_delay_s=0.05, restart_backoff_s=FAST_BACKOFF, oci_runtime="runc")
    kubelet.start()
    v1 = client(api)
    yield kubelet, v1
    kubelet.stop()


def kubectl(api: ApiServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--server", api.url, *args], capture_output=True, text=True, timeout=WAIT_S)


@pytest.mark.skipif(bool(runc_missing), reason=f"containers do not run for real here: {runc_missing}")
def test_a_missing_executable_fails_the_pod_with_start_error_an_event_and_no_logs(api, runc_node, eventually):
    _, v1 = runc_node
    v1.create_namespaced_pod("default", job("smi", "Never", gpus=0, command=["nvidia-smi", "-L"]))
    eventually(lambda: v1.read_namespaced_pod("smi", "default").status.phase == "Failed", WAIT_S, "Failed")
    status = main_status(v1, "smi")
    assert status.ready is False                                                       # READY 0/1
    assert status.state.terminated.reason == "StartError" and status.state.terminated.exit_code == 128
    assert 'exec: "nvidia-smi": executable file not found' in status.state.terminated.message
    failed = [m for t, r, m in events(v1, "smi") if (t, r) == ("Warning", "Failed")]
    assert failed and 'executable file not found' in failed[0]
    if shutil.which("kubectl"):
        got = kubectl(api, "get", "pod", "smi", "--no-headers")
        assert got.returncode == 0 and got.stdout.split()[1:3] == ["0/1", "StartError"], got.stdout + got.stderr
        logs = kubectl(api, "logs", "smi")
        assert logs.returncode == 0 and logs.stdout == "", logs.stderr     # it never ran: nothing logged


@pytest.mark.skipif(bool(runc_missing), reason=f"containers do not run for real here: {runc_missing}")
def test_a_container_that_ran_shows_its_output_in_kubectl_logs_with_previous_runs(api, runc_node, eventually):
    _, v1 = runc_node
    v1.create_namespaced_pod("default", job("echoer", "OnFailure", gpus=0,
                                            command=["sh", "-c", "echo run; echo oops >&2; exit 4"]))
    eventually(lambda: restarts(v1, "echoer") >= 2, WAIT_S, "two restarts")
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    previous = kubectl(api, "logs", "echoer", "--previous")
    # stdout and stderr reach the log through separate pipes, so their order may differ, as on a real node
    assert previous.returncode == 0 and sorted(previous.stdout.splitlines()) == ["oops", "run"], previous.stderr
    gone = kubectl(api, "logs", "nothing-here")
    assert gone.returncode != 0 and 'pods "nothing-here" not found' in gone.stderr


def test_events_and_conditions_read_as_kubelet_v1_37_writes_them(node, eventually):
    """What tests/real/test_simulated_and_real_kubelet_agree.py found the real kubelet does: Pulled and
    Created before Started, v1.37's wording, and PodReadyToStartContainers (False once the pod is done)."""
    _, v1 = node
    v1.create_namespaced_pod("default", job("once", "Never", run_seconds=0.3, exit_code=0))
    running = eventually(lambda: (p := v1.read_namespaced_pod("once", "default")).status.phase == "Running" and p,
                         WAIT_S, "Running")
    conditions = {c.type: c.status for c in running.status.conditions}
    assert conditions["PodReadyToStartContainers"] == "True"
    done = eventually(lambda: (p := v1.read_namespaced_pod("once", "default")).status.phase == "Succeeded" and p,
                      WAIT_S, "Succeeded")
    assert {c.type: c.status for c in done.status.conditions}["PodReadyToStartContainers"] == "False"
    said = [(r, m) for _, r, m in events(v1, "once")]
    assert said[:3] == [("Pulled", 'Container image "busybox" already present on machine and can be accessed by '
                                   "the pod"), ("Created", "Container created"), ("Started", "Container started")]
