"""The exporter's test world: a fake GPU node (fake NVML, pod-resources server, hook records, /proc),
a recording Kubernetes API endpoint, and a real Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hook.container import OciState, PodIdentity
from hook.records import remove_record, write_record
from simcluster.kubelet.checkpoint import ContainerAllocation
from simcluster.kubelet.podresources import PodResourcesServer
from simcluster import poll_until
from tessera import RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY
from tessera.fakenvml import FaultInjector, load_description
from tessera.grant import new_grant

REPO = Path(__file__).resolve().parents[2]
NODES = REPO / "tessera" / "nodes"
GIB = 1 << 30


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    """Poll until ``predicate`` returns something truthy; fail the test after ``timeout``."""
    try:
        return poll_until(predicate, timeout, 0.05, what)
    except TimeoutError as exc:
        pytest.fail(str(exc))


class Devices:
    """The device manager side a PodResourcesServer reads: allocations and healthy devices, mutable."""

    def __init__(self) -> None:
        self.held: list[ContainerAllocation] = []
        self.healthy: dict[str, dict[str, list[int]]] = {}

    def allocations(self) -> list[ContainerAllocation]:
        return list(self.held)

    def healthy_devices(self) -> dict[str, dict[str, list[int]]]:
        return self.healthy

    def give(self, uid: str, pod: str, namespace: str, container: str, resource: str, ids: list[str]) -> None:
        self.held.append(ContainerAllocation(uid, container, resource, {0: ids}, b"", pod, namespace))

    def take_back(self, pod: str) -> None:
        self.held = [a for a in self.held if a.pod_name != pod]


class FakeNode:
    """One fake GPU node in a short /tmp directory (unix socket paths must stay short)."""

    def __init__(self, root: Path, description: str) -> None:
        self.root = root
        self.description_path = str(root / Path(description).name)
        shutil.copy(NODES / description, self.description_path)
        self.description = load_description(self.description_path)
        self.faults = FaultInjector(self.description_path)
        self.faults.reset()
        self.state_dir = str(root / "containers")
        self.proc_root = root / "proc"
        self.overuse_dir = str(root / "overuse")
        self.socket = str(root / "pr.sock")
        self.devices = Devices()
        self.pod_resources = PodResourcesServer(self.devices, self.socket)
        os.makedirs(self.state_dir)
        self.proc_root.mkdir()

    def uuid(self, index: int) -> str:
        return self.description.gpus[index].uuid

    def offer_mps(self, indexes: range | list[int]) -> None:
        """Every listed GPU offers 100 mps-core units and its whole GiB as mps-memory."""
        for i in indexes:
            gpu = self.description.gpus[i]
            for n in range(100):
                self.devices.healthy.setdefault(RESOURCE_MPS_CORE, {})[f"{gpu.uuid}::core::{n}"] = [0]
            for n in range(gpu.model.memory_mib // 1024):
                self.devices.healthy.setdefault(RESOURCE_MPS_MEMORY, {})[f"{gpu.uuid}::mem::{n}"] = [0]

    def start_mps_container(self, pod: str, container: str, gpu: int | list[int], core: int, mem_gib: int, *,
                            pid: int, gpu_pids: list[int], nested: bool = False, namespace: str = "team") -> str:
        """A container with an MPS grant on ``gpu`` (several: ``core`` and ``mem_gib`` spread evenly, as
        mps-core in hundreds is): kubelet allocation, hook record, /proc entries."""
        gpus = gpu if isinstance(gpu, list) else [gpu]
        uuids, uid, cid = [self.uuid(g) for g in gpus], f"uid-{pod}", f"{pod}-{container}".ljust(64, "0")[:64]
        core_ids = [f"{u}::core::{n}" for u in uuids for n in range(core // len(uuids))]
        mem_ids = [f"{u}::mem::{n}" for u in uuids for n in range(mem_gib // len(uuids))]
        paths = [f"/dev/nvidia{g}" for g in gpus]
        self.devices.give(uid, pod, namespace, container, RESOURCE_MPS_CORE, core_ids)
        self.devices.give(uid, pod, namespace, container, RESOURCE_MPS_MEMORY, mem_ids)
        grants = [new_grant(RESOURCE_MPS_CORE, self.description.node, core_ids, uuids, paths, core=core,
                            pipe="/run/tessera/mps/pipe"),
                  new_grant(RESOURCE_MPS_MEMORY, self.description.node, mem_ids, uuids, paths, mem_gib=mem_gib)]
        cgroup = f"/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{cid}.scope"
        write_record(self.state_dir, OciState(cid, pid, "/bundle"), PodIdentity(uid, pod, namespace, container),
                     grants, {"": cgroup}, {})
        for p in [pid, *gpu_pids]:
            (self.proc_root / str(p)).mkdir(exist_ok=True)
            path = cgroup + ("/worker" if nested and p != pid else "")
            (self.proc_root / str(p) / "cgroup").write_text(f"0::{path}\n")
        return cid

    def stop_container(self, pod: str, cid: str) -> None:
        self.devices.take_back(pod)
        remove_record(self.state_dir, cid)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        return resp.read().decode()


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric in an exposition, as (labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


class RecordingApi:
    """A tiny Kubernetes API endpoint: records Events POSTed to it, serves one Node object."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.node: dict | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.endswith("/events"):
                    api.events.append(body)
                self._reply(201, body)

            def do_GET(self) -> None:  # noqa: N802
                if api.node is not None and self.path.startswith(f"/api/v1/nodes/{api.node['metadata']['name']}"):
                    self._reply(200, api.node)
                else:
                    self._reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404})

            def _reply(self, code: int, doc: dict) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def kubeconfig(self, path: Path) -> str:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": self.url}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
            "users": [{"name": "t", "user": {}}],
        }))
        return str(path)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


