"""The two API servers of the differential check, seen as a client sees them: the embedded one
(simcluster.apiserver) and the real kube-apiserver, each reached with its admin's kubeconfig through the
``kubernetes`` package's own HTTP pool, raw (status, headers, body), so that a difference in what comes
back on the wire is a difference the check sees."""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import kubernetes
import yaml

JSON = "application/json"
PODS = "/api/v1/namespaces/default/pods"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SECRETS = "/api/v1/namespaces/default/secrets"
EVENTS = "/api/v1/namespaces/default/events"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


@dataclass
class Reply:
    """One HTTP answer: its status code, its headers (lower-case names) and its body's bytes."""

    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        """The body as JSON (a ValueError names the content when it is not)."""
        try:
            return json.loads(self.raw)
        except ValueError:
            raise ValueError(f"not JSON ({self.headers.get('content-type')}): {self.raw[:200]!r}") from None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


@dataclass
class Server:
    """One API server under check: ``name`` (embedded or real), its admin kubeconfig, a kubectl for it."""

    name: str
    kubeconfig: Path
    kubectl_path: str | None = None
    forget_history: Callable[[], None] = field(default=lambda: None)   # resourceVersion 1 too old afterwards

    def __post_init__(self) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        self.host = configuration.host
        self._api_client = kubernetes.client.ApiClient(configuration)
        self._pool = self._api_client.rest_client.pool_manager
        token = configuration.api_key.get("authorization")   # a bearer token; the real admin has a certificate
        self._auth = {"Authorization": token} if token else {}

    def request(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                content_type: str = JSON, accept: str = JSON, timeout_s: float = 30.0) -> Reply:
        """One request; ``body`` goes as JSON unless it is already bytes/str."""
        url = self.host + path + (("?" + urlencode(query)) if query else "")
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        headers = {**self._auth, "Accept": accept}
        if data is not None:
            headers["Content-Type"] = content_type
        answer = self._pool.request(method, url, body=data, headers=headers, timeout=timeout_s,
                                    preload_content=True, retries=False)
        return Reply(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.data)

    def watch(self, path: str, query: dict[str, Any], until: int, timeout_s: float = 30.0) -> list[dict]:
        """The first ``until`` events of a watch on ``path`` (the server ends it after ``timeout_s``)."""
        url = self.host + path + "?" + urlencode({**query, "watch": "true", "timeoutSeconds": int(timeout_s)})
        answer = self._pool.request("GET", url, headers={**self._auth, "Accept": JSON}, preload_content=False,
                                    timeout=timeout_s + 10, retries=False)
        events: list[dict] = []
        buffer = b""
        try:
            assert answer.status == 200, answer.read()
            for chunk in answer.stream(1024, decode_content=True):
                buffer += chunk
                while b"\n" in buffer and len(events) < until:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        events.append(json.loads(line))
                if len(events) >= until:
                    break
        finally:
            answer.release_conn()
        return events

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """kubectl (the built one of the pinned release) against this server as its admin."""
        assert self.kubectl_path, "no kubectl"
        return subprocess.run([self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args], input=input,
                              capture_output=True, text=True, timeout=120)


def configmap(name: str, data: dict[str, str] | None = None, namespace: str = "default") -> dict:
    """A ConfigMap as a user writes it."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data or {"k": "v"}}


def pod(name: str, *, node: str | None = None, labels: dict[str, str] | None = None,
        namespace: str = "default") -> dict:
    """A pod no scheduler takes (``schedulerName: nobody``: the real cluster's kube-scheduler would
    otherwise write its status while the check reads it), bound to ``node`` when given."""
    spec: dict[str, Any] = {"schedulerName": "nobody",
                            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]},
                                           {"name": "side", "image": "busybox", "command": ["sleep", "3600"]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}}, "spec": spec}


def status_of(reply: Reply) -> dict:
    """The Status a refusal carries (its fields a client reads)."""
    doc = reply.body
    assert doc.get("kind") == "Status", doc
    return {"status": doc.get("status"), "code": doc.get("code"), "reason": doc.get("reason"),
            "message": doc.get("message"), "details": doc.get("details")}


def yaml_docs(text: str | bytes) -> list[Any]:
    """The documents of a YAML stream."""
    return list(yaml.safe_load_all(text))


@contextmanager
def embedded_api(history_size: int) -> Iterator[Server]:
    """The embedded API server alone, keeping ``history_size`` watch events per resource."""
    import realcluster
    from simcluster.apiserver import ApiServer

    try:
        kubectl = realcluster.find_binaries()["kubectl"]
    except realcluster.BinariesMissing:
        kubectl = None
    with tempfile.TemporaryDirectory(prefix="tessera-diff-") as workdir, \
            ApiServer(host="127.0.0.1", port=0, history_size=history_size) as api:
        yield Server("embedded", api.write_kubeconfig(Path(workdir) / "kubeconfig"), kubectl)


@contextmanager
def real_api(binaries) -> Iterator[Server]:
    """kube-apiserver with etcd, the controller-manager and kube-scheduler; no kubelets, no Tessera.
    Secrets bypass the watch cache (it keeps minutes of history), so that compacting etcd
    (``forget_history``) makes an old resourceVersion too old, as on a cluster running for a while."""
    import realcluster

    with realcluster.running(binaries=binaries, kubelets=False, tessera=False,
                             extra_flags={"kube-apiserver": ["--watch-cache-sizes=secrets#0"]}) as cluster:
        server = Server("real", cluster.kubeconfig, cluster.binaries["kubectl"])
        server.forget_history = lambda: _compact_etcd(cluster.control.etcd_url, server)
        yield server


def _compact_etcd(etcd_url: str, server: Server) -> None:
    """Compact etcd up to the current revision (what kube-apiserver does every 5 minutes)."""
    revision = int(server.request("GET", SECRETS).body["metadata"]["resourceVersion"])
    request = urllib.request.Request(f"{etcd_url}/v3/kv/compaction", method="POST",
                                     data=json.dumps({"revision": revision, "physical": True}).encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200, answer.read()
