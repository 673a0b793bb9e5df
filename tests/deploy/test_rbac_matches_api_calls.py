"""RBAC in deploy/ is exactly what the code uses. The extender, a device plugin and an exporter run
against the embedded API server, each with its own bearer token (its ServiceAccount's name), while
the server records every request; a GPU pod is scheduled, allocated and evicted for overuse, and a
pod the extender never filtered is bound. Then: every call each daemon made is allowed by its
ServiceAccount's rules, and every verb granted was used, or is listed below with the code that needs it."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import yaml

from manifests import containers, flag
from rbac import Attributes, attributes, grants

from simcluster.exporter_launch import start_exporter, wait_ready
from extender.kubeapi import KubeApi, api_client
from simcluster.extenders import start_extender
from simcluster.simscheduler import SimScheduler
from simcluster.apiserver import ApiError
from simcluster.apiserver.authn import service_account_user
from simcluster.apiserver.recording import RequestRecorder
from simcluster.cluster import ClusterDescription, NodeSpec
from simcluster.plugins import device_plugins
from simcluster import running
from tessera import ANNOTATION_ALLOCATED, ANNOTATION_ASSIGNMENT

NAMESPACE = "tessera-system"
COMPONENTS = ("tessera-extender", "tessera-device-plugin", "tessera-exporter")
# Granted, needed, and not reached by this run: (component, verb, group, resource) -> the code.
NOT_EXERCISED = {
    ("tessera-exporter", "create", "", "events"):
        "exporter/events.py KubeEvents.emit: one Event per episode of a process over its GPU memory grant",
    **{("tessera-extender", "watch", "resource.k8s.io", kind):
       "extender/informer.py follows it for DRA scoring; the embedded API server does not serve resource.k8s.io "
       "(its list answers 404, and the extender then stops following it), so the watch is made on the real tier "
       "(tests/real/test_dra_pods_scored_by_tessera.py)"
       for kind in ("resourceslices", "resourceclaims", "resourceclaimtemplates")},
}


def token_kubeconfig(cluster, token: str):
    """The cluster's kubeconfig, authenticating as ``token`` (how the recorder tells daemons apart): the
    API server takes it as the ServiceAccount of that name."""
    cluster.api.authenticator.add_token(token, service_account_user(NAMESPACE, token))
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    doc["users"][0]["user"] = {"token": token}
    path = cluster.workdir / f"{token}.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def gpu_pod(name: str, scheduler: str) -> dict:
    limits = {"nvidia.com/gpu": "1"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"schedulerName": scheduler, "containers": [
                {"name": "main", "image": "cuda", "resources": {"limits": limits, "requests": limits}}]}}


def post_bind(url: str, pod: dict, node: str) -> dict:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    meta = pod["metadata"]
    conn.request("POST", "/bind", json.dumps({"PodName": meta["name"], "PodNamespace": meta["namespace"],
                                              "PodUID": meta["uid"], "Node": node}).encode(),
                 {"Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return answer


def evicted(registry, namespace: str, name: str) -> bool:
    """The pod is being deleted, or already gone (the kubelet confirmed its end)."""
    try:
        return bool(registry.get("pods", name, namespace)["metadata"].get("deletionTimestamp"))
    except ApiError:
        return True


def exercise(cluster, recorder: RequestRecorder, extender_args: list[str]) -> None:
    """Run the three daemons through the paths that call the API server."""
    registry = cluster.api.registry
    registry.create("namespaces", {"metadata": {"name": NAMESPACE}})
    node = cluster.nodes["gpu-0"]
    overuse = cluster.workdir / "overuse"
    overuse.mkdir()
    extender = start_extender(token_kubeconfig(cluster, "tessera-extender"), cluster.workdir, leader_election=True,
                              lease_namespace=flag(extender_args, "lease-namespace"),
                              lease_name=flag(extender_args, "lease-name"), lease_retry_s=0.2,
                              dra_scoring=True)   # off by default; on, it lists the DRA kinds deploy/ grants
    exporter = None
    scheduler = None
    try:
        with device_plugins(cluster, extra=[f"--kubeconfig={token_kubeconfig(cluster, 'tessera-device-plugin')}",
                                            "--evict-on-overuse", f"--overuse-dir={overuse}"]):
            node.paths.tessera_state.mkdir(parents=True, exist_ok=True)
            exporter = start_exporter(str(node.nvml_description), str(node.paths.pod_resources_socket),
                                      str(node.paths.tessera_state), node_name="gpu-0",
                                      kubeconfig=str(token_kubeconfig(cluster, "tessera-exporter")),
                                      overuse_dir=str(cluster.workdir / "exporter-overuse"),
                                      log_path=str(cluster.workdir / "exporter.log"))
            wait_ready(exporter)
            scheduler = SimScheduler(KubeApi(api_client(str(cluster.kubeconfig))), extender.url, retry_s=0.2).start()
            # Through kube-scheduler's path: filter, prioritize, bind; the kubelet admits, the plugin allocates.
            registry.create("pods", gpu_pod("scheduled", "tessera-scheduler"), namespace="default")
            cluster.wait_for(lambda: ANNOTATION_ALLOCATED in (registry.get("pods", "scheduled", "default")["metadata"]
                                                              .get("annotations") or {}), 30, what="allocation")
            # A bind for a pod the extender's watch has not delivered yet: it reads the pod first.
            manual = registry.create("pods", gpu_pod("bound-directly", "someone-else"), namespace="default")
            extender.verbs.pending = None
            assert not post_bind(extender.url, manual, "gpu-0").get("Error")
            assert ANNOTATION_ASSIGNMENT in registry.get("pods", "bound-directly", "default")["metadata"]["annotations"]
            # The exporter's mark of a pod over its grant: the plugin evicts it.
            victim = registry.get("pods", "scheduled", "default")
            (overuse / "default_scheduled_main_GPU-x.json").write_text(json.dumps({
                "v": 1, "namespace": "default", "pod": "scheduled", "pod_uid": victim["metadata"]["uid"],
                "container": "main", "gpu_uuid": "GPU-x", "used_bytes": 9 << 30, "grant_bytes": 8 << 30}))
            cluster.wait_for(lambda: evicted(registry, "default", "scheduled"), 15, what="eviction")
            # A Lease renewal (PUT) and the exporter's inventory read.
            cluster.wait_for(lambda: any(r.method == "PUT" for r in recorder.requests("tessera-extender")), 10,
                             what="lease renewal")
            cluster.wait_for(lambda: recorder.requests("tessera-exporter"), 15, what="exporter API call")
    finally:
        if scheduler is not None:
            scheduler.stop()
        if exporter is not None:
            exporter.terminate()
            exporter.wait(timeout=10)
        extender.stop()


def test_each_daemon_calls_exactly_what_deploy_grants(rendered):
    objects = rendered["default"]
    extender_args = [c for _, c in containers(objects) if c["name"] == "extender"][0]["args"]
    description = ClusterDescription(nodes=(NodeSpec(name="gpu-0", model="T4", gpus=2, mode="exclusive"),))
    with running(description) as cluster:  # its own short /tmp folder: unix socket paths are short
        recorder = RequestRecorder()
        cluster.api.recorder = recorder
        exercise(cluster, recorder, extender_args)
        cluster.api.recorder = None
    problems = []
    for component in COMPONENTS:
        granted = grants(objects, component, NAMESPACE)
        assert granted, f"no RBAC for {component}"
        used = set()
        for request in recorder.requests(component):
            attrs = attributes(request)
            if attrs is None:
                continue
            allowing = [g for g in granted if g.allows(attrs)]
            if not allowing:
                problems.append(f"{component}: {attrs} ({request.method} {request.path}) is not allowed by deploy/")
            used.update(allowing)
        for grant in granted:
            key = (component, grant.verb, grant.group, grant.resource)
            if grant not in used and key not in NOT_EXERCISED:
                problems.append(f"{component}: deploy/ grants {grant.verb} {grant.group or 'core'}/{grant.resource}"
                                f"{' ' + str(list(grant.names)) if grant.names else ''}, which the code never used")
    for component, verb, group, resource in NOT_EXERCISED:
        assert any((g.verb, g.group, g.resource) == (verb, group, resource) for g in grants(objects, component, NAMESPACE)), \
            f"NOT_EXERCISED lists {verb} {resource} for {component}, which deploy/ does not grant"
    assert not problems, "\n".join(problems)


def test_request_attributes_follow_kubernetes_authorization():
    from simcluster.apiserver.recording import ApiRequest

    def attrs(method, path, **query):
        return attributes(ApiRequest("u", method, path, query))

    assert attrs("GET", "/api/v1/pods") == Attributes("list", "", "pods", "", "")
    assert attrs("GET", "/api/v1/pods", watch="true") == Attributes("watch", "", "pods", "", "")
    assert attrs("GET", "/api/v1/nodes", watch="1", fieldSelector="metadata.name=n1") == \
        Attributes("watch", "", "nodes", "", "n1")
    assert attrs("GET", "/api/v1/namespaces/d/pods/p") == Attributes("get", "", "pods", "d", "p")
    assert attrs("POST", "/api/v1/namespaces/d/pods/p/binding") == Attributes("create", "", "pods/binding", "d", "p")
    assert attrs("PUT", "/apis/coordination.k8s.io/v1/namespaces/t/leases/l") == \
        Attributes("update", "coordination.k8s.io", "leases", "t", "l")
    assert attrs("PATCH", "/api/v1/nodes/n1") == Attributes("patch", "", "nodes", "", "n1")
    assert attrs("DELETE", "/api/v1/namespaces/d/pods") == Attributes("deletecollection", "", "pods", "d", "")
    assert attrs("GET", "/apis") is None and attrs("GET", "/version") is None
