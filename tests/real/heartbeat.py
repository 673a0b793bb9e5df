"""A Node object without a kubelet, kept Ready as a kubelet keeps it: for real-tier tests of scheduling
onto DRA nodes (one real kubelet runs per machine, used elsewhere)."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import kubernetes


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Heartbeat:
    """Keeps Node ``name`` Ready for the node lifecycle controller, as a kubelet would: its Lease renewed
    and its Ready condition posted every few seconds."""

    def __init__(self, core: kubernetes.client.CoreV1Api, leases: kubernetes.client.CoordinationV1Api,
                 name: str, cpu: str = "8") -> None:
        self.core, self.leases, self.name, self.cpu = core, leases, name, cpu
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def start(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def beat(self) -> None:
        now = _now()
        lease = {"metadata": {"name": self.name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": now}}
        try:
            self.leases.replace_namespaced_lease(self.name, "kube-node-lease", lease)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            self.leases.create_namespaced_lease("kube-node-lease", lease)
        resources = {"cpu": self.cpu, "memory": "32Gi", "pods": "110"}   # no nvidia.com/gpu: no device plugin here
        self.core.patch_node_status(self.name, {"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "heartbeat",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})

    def _run(self) -> None:
        while not self._stop.wait(5):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the next beat tries again; the test's waits say what failed
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
