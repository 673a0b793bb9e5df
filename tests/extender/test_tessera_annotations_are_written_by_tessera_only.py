"""Only Tessera's own ServiceAccounts change a pod's tessera.io/* annotations (issue 14, item 3).

The webhook is registered as deploy/ registers it (pod CREATE and UPDATE) with the embedded API server,
which authenticates bearer tokens as a real one does and tells the webhook who calls. A pod owner's
PATCH or PUT that adds, changes or removes a tessera.io/* annotation is refused at the API (the real
client and kubectl see the reason); the device plugin's ServiceAccount writes its ledger, and the
extender's bind still lands its signed assignment through the Binding.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from extender.kubeapi import api_client
from simcluster.extenders import start_extender
from extender_cluster import api_server, bind_args, gpu_pod, post
from simcluster.apiserver.authn import UserInfo
from simcluster.cluster import NodeSpec
from simcluster.scheduling import register_webhook
from tessera import (
    ANNOTATION_ALLOCATED,
    ANNOTATION_ASSIGNMENT,
    NAMESPACE,
    SERVICE_ACCOUNT_DEVICE_PLUGIN,
    SERVICE_ACCOUNT_EXTENDER,
)
from tessera.pki import write_webhook_pki

SERVICE = "tessera-extender.tessera-system.svc"
DENIED = 'admission webhook "pods.tessera.io" denied the request: '
FORGED = json.dumps({"version": 1, "node": "gpu-0", "podUID": "x", "writtenBy": "device-plugin",
                     "containers": {"main": {"nvidia.com/gpu": {"gpus": ["GPU-a", "GPU-b"],
                                                                "deviceIDs": ["GPU-a", "GPU-b"]}}}})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("annotations")
    ca = write_webhook_pki(d, [SERVICE], ["127.0.0.1"], days=1)
    port = {}
    with api_server(d, [NodeSpec("gpu-0", "T4", 4, mode="exclusive")],
                    service_resolver=lambda ns, name, p: ("127.0.0.1", port["webhook"])) as (srv, admin_kc):
        def kubeconfig(name: str, token: str):
            return srv.write_kubeconfig(d / f"{name}.kubeconfig", token=token)

        ext = start_extender(kubeconfig("extender", srv.service_account_token(NAMESPACE, SERVICE_ACCOUNT_EXTENDER)),
                             d, leader_election=False, tls_cert_path=str(d / "tls.crt"), tls_key_path=str(d / "tls.key"))
        port["webhook"] = ext.webhook_port
        register_webhook(srv.url, {"service": {"namespace": NAMESPACE, "name": "tessera-extender", "path": "/mutate",
                                               "port": 443}, "caBundle": ca})
        srv.authenticator.add_token("alice-token", UserInfo("alice"))
        users = {"alice": kubeconfig("alice", "alice-token"), "admin": admin_kc,
                 "plugin": kubeconfig("plugin", srv.service_account_token(NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN))}
        try:
            yield srv, ext, users, d
        finally:
            ext.stop()


def core_as(kubeconfig) -> client.CoreV1Api:
    return client.CoreV1Api(api_client(str(kubeconfig)))


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(ApiException) as err:
        call(*args, **kwargs)
    assert err.value.status == 403
    return json.loads(err.value.body)["message"]


def allocated_record(containers: dict) -> str:
    return json.dumps({"version": 1, "node": "gpu-0", "containers": containers})


def bound_gpu_pod(srv, ext, users, name: str) -> dict:
    """A GPU pod a user created, the extender bound (its signed assignment arrives in the Binding) and the
    device plugin marked allocated (its ServiceAccount writes the record)."""
    alice = core_as(users["alice"])
    alice.create_namespaced_pod("default", gpu_pod(name, {"nvidia.com/gpu": 1}, scheduler="default-scheduler"))
    pod = srv.registry.get("pods", name, "default")
    assert pod["spec"]["schedulerName"] == "tessera-scheduler"
    assert post(ext.url, "bind", bind_args(pod, "gpu-0"))[1] == {"Error": ""}
    pod = srv.registry.get("pods", name, "default")
    assert pod["spec"]["nodeName"] == "gpu-0" and ANNOTATION_ASSIGNMENT in pod["metadata"]["annotations"]
    held = json.loads(pod["metadata"]["annotations"][ANNOTATION_ASSIGNMENT])["containers"]
    core_as(users["plugin"]).patch_namespaced_pod(name, "default", {"metadata": {"annotations": {
        ANNOTATION_ALLOCATED: allocated_record(held)}}})
    return srv.registry.get("pods", name, "default")


def test_a_pod_owners_patch_of_a_tessera_annotation_is_refused(cluster):
    srv, ext, users, _ = cluster
    bound = bound_gpu_pod(srv, ext, users, "mine")
    before = bound["metadata"]["annotations"]
    alice = core_as(users["alice"])
    attempts = [
        {"metadata": {"annotations": {ANNOTATION_ASSIGNMENT: FORGED}}},            # rewrite
        {"metadata": {"annotations": {ANNOTATION_ASSIGNMENT: ""}}},                # empty
        {"metadata": {"annotations": {ANNOTATION_ASSIGNMENT: None}}},              # remove
        {"metadata": {"annotations": {ANNOTATION_ALLOCATED: None}}},               # remove the plugin's record
        {"metadata": {"annotations": {"tessera.io/allocated-too": "main"}}},       # add
        {"metadata": {"annotations": {"tessera.io/policy": "binpack"}}},           # add, even the user's own key
    ]
    for patch in attempts:
        message = refusal(alice.patch_namespaced_pod, "mine", "default", patch)
        assert message.startswith(DENIED) and "tessera.io/* annotations of an existing pod are written by " \
                                                 "Tessera only; alice may not" in message, message
    json_patch = [{"op": "remove", "path": "/metadata/annotations/tessera.io~1assignment"}]
    assert "tessera.io/assignment" in refusal(alice.patch_namespaced_pod, "mine", "default", json_patch)
    replaced = alice.read_namespaced_pod("mine", "default")
    replaced.metadata.annotations[ANNOTATION_ASSIGNMENT] = FORGED
    assert DENIED in refusal(alice.replace_namespaced_pod, "mine", "default", replaced)  # a PUT too
    assert srv.registry.get("pods", "mine", "default")["metadata"]["annotations"] == before
    # Other changes to the same pod still go through.
    labelled = alice.patch_namespaced_pod("mine", "default", {"metadata": {"labels": {"team": "ml"},
                                                                           "annotations": {"note": "hi"}}})
    assert labelled.metadata.labels["team"] == "ml" and labelled.metadata.annotations[ANNOTATION_ASSIGNMENT] == \
        before[ANNOTATION_ASSIGNMENT]


def test_the_cluster_admin_is_refused_too(cluster):
    srv, ext, users, _ = cluster
    bound_gpu_pod(srv, ext, users, "admins")
    admin = core_as(users["admin"])
    message = refusal(admin.patch_namespaced_pod, "admins", "default",
                      {"metadata": {"annotations": {ANNOTATION_ASSIGNMENT: FORGED}}})
    assert "system:admin may not add, change or remove them" in message


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_annotate_shows_the_refusal(cluster, tmp_path):
    # kubectl (client-go) sends a kubeconfig's credentials over TLS only: to the embedded API server's
    # plain HTTP it comes without them, as the cluster's admin.
    srv, ext, users, _ = cluster
    bound_gpu_pod(srv, ext, users, "via-kubectl")
    out = subprocess.run(["kubectl", "--kubeconfig", str(users["admin"]), "--cache-dir", str(tmp_path / "cache"),
                          "annotate", "--overwrite", "pod", "via-kubectl", f"{ANNOTATION_ASSIGNMENT}={FORGED}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "Error from server (Forbidden): " + DENIED in out.stderr
    assert "system:admin may not add, change or remove them" in out.stderr
    assert srv.registry.get("pods", "via-kubectl", "default")["metadata"]["annotations"][ANNOTATION_ASSIGNMENT] != FORGED


def test_the_device_plugins_service_account_writes_its_annotations(cluster):
    srv, _, users, _ = cluster
    # A pod another scheduler placed: the plugin records what the kubelet gave it and writes its assignment.
    core_as(users["alice"]).create_namespaced_pod("default", gpu_pod("elsewhere", {"nvidia.com/gpu": 1},
                                                                     scheduler="volcano"))
    srv.registry.bind("default", "elsewhere", {"target": {"kind": "Node", "name": "gpu-0"}})
    uid = srv.registry.get("pods", "elsewhere", "default")["metadata"]["uid"]
    held = {"main": {"nvidia.com/gpu": {"deviceIDs": ["GPU-a"], "gpus": ["GPU-a"]}}}
    written = {ANNOTATION_ALLOCATED: allocated_record(held),
               ANNOTATION_ASSIGNMENT: json.dumps({"version": 1, "node": "gpu-0", "podUID": uid,
                                                  "writtenBy": "device-plugin", "containers": held})}
    plugin = core_as(users["plugin"])
    patched = plugin.patch_namespaced_pod("elsewhere", "default", {"metadata": {"annotations": written}})
    assert {k: patched.metadata.annotations[k] for k in written} == written
    # And changes them later (a re-allocation after a kubelet restart), or takes one away.
    again = plugin.patch_namespaced_pod("elsewhere", "default", {"metadata": {"annotations": {ANNOTATION_ALLOCATED: None}}})
    assert ANNOTATION_ALLOCATED not in again.metadata.annotations
