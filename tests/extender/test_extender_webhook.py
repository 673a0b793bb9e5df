"""The admission webhook, served by the extender over TLS and called by the embedded API server as a
MutatingWebhookConfiguration: it routes Tessera pods to Tessera's scheduler, completes mps-memory from
the smallest MPS card, refuses malformed requests with a message kubectl shows, and strips
user-written tessera.io/* annotations; a user-written assignment added later fails the signature."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest

from extender_cluster import api_server, gpu_pod
from kubernetes import client
from kubernetes.client.rest import ApiException

from simcluster.cluster import NodeSpec
from tessera import ANNOTATION_ASSIGNMENT
from tessera.pki import write_webhook_pki
from tessera.assignment import Assignment, AssignmentError, ResourceAssignment, load_public_key, verify_assignment

from simcluster.extenders import start_extender
from extender.webhook import PodAdmission
from tessera.config import ExtenderConfig, parse_config

SERVICE = "tessera-extender.tessera-system.svc"


def _pki(d):
    return write_webhook_pki(d, [SERVICE], ["127.0.0.1"], days=1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("webhook")
    ca = _pki(d)
    port = {}
    nodes = [NodeSpec("t4", "T4", 1, mode="mps"), NodeSpec("a100", "A100-SXM4-40GB", 1, mode="mps"),
             NodeSpec("excl", "T4", 1, mode="exclusive")]
    with api_server(d, nodes, service_resolver=lambda ns, name, p: ("127.0.0.1", port["webhook"])) as (srv, kc):
        ext = start_extender(kc, d, leader_election=False, tls_cert_path=str(d / "tls.crt"),
                             tls_key_path=str(d / "tls.key"))
        port["webhook"] = ext.webhook_port
        api = client.ApiClient(client.Configuration(host=srv.url))
        client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration({
            "metadata": {"name": "tessera"},
            "webhooks": [{"name": "pods.tessera.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "failurePolicy": "Fail",
                          "clientConfig": {"service": {"namespace": "tessera-system", "name": "tessera-extender",
                                                       "path": "/mutate", "port": 443}, "caBundle": ca},
                          "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                     "resources": ["pods"]}]}]})
        try:
            yield srv, client.CoreV1Api(api), kc, d
        finally:
            ext.stop()


def _refusal(core, pod) -> str:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod)
    return json.loads(err.value.body)["message"]


def test_tessera_pods_are_routed_and_mps_memory_completed_from_the_smallest_card(cluster):
    srv, core, _, _ = cluster
    created = core.create_namespaced_pod("default", gpu_pod("half", {"nvidia.com/mps-core": 50}, scheduler="default-scheduler"))
    assert created.spec.scheduler_name == "tessera-scheduler"
    # T4 (15 GiB) is the smallest MPS card: 50 % of it is 7 GiB, rounded down.
    res = created.spec.containers[0].resources
    assert res.limits["nvidia.com/mps-memory"] == "7" and res.requests["nvidia.com/mps-memory"] == "7"
    # A pod without Tessera resources is left alone.
    plain = core.create_namespaced_pod("default", {"metadata": {"name": "plain"}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}]}})
    assert plain.spec.scheduler_name == "default-scheduler"
    # Whole GPUs through MPS hold all their memory: completed so the kubelet's mps-memory count stays true.
    whole = core.create_namespaced_pod("default", gpu_pod("two-whole", {"nvidia.com/mps-core": 200}))
    assert whole.spec.containers[0].resources.limits["nvidia.com/mps-memory"] == "30"   # 2 x the 15 GiB T4


@pytest.mark.parametrize("limits, message", [
    ({"nvidia.com/mps-memory": 4}, "nvidia.com/mps-memory needs nvidia.com/mps-core on the same GPU"),
    ({"nvidia.com/mps-core": 150}, "150 is over 100 but not in whole hundreds"),
    ({"nvidia.com/mps-core": 50, "nvidia.com/mps-memory": 41},
     "41 GiB is more than the largest MPS GPU in the cluster has (40 GiB)"),
])
def test_malformed_requests_are_refused_with_the_reason(cluster, limits, message):
    srv, core, _, _ = cluster
    text = _refusal(core, gpu_pod("bad", limits))
    assert text.startswith('admission webhook "pods.tessera.io" denied the request: ') and message in text
    assert srv.registry.list("pods", "default", field_selector="metadata.name=bad") == []


def test_user_written_tessera_annotations_never_survive(cluster):
    srv, core, _, workdir = cluster
    forged = json.dumps({"version": 1, "node": "a100", "podUID": "x", "writtenBy": "extender",
                         "containers": {}, "signature": "AAAA"})
    created = core.create_namespaced_pod("default", gpu_pod(
        "sneaky", {"nvidia.com/mps-core": 10, "nvidia.com/mps-memory": 1},
        annotations={ANNOTATION_ASSIGNMENT: forged, "tessera.io/allocated": "main", "team": "ml"}))
    assert created.metadata.annotations == {"team": "ml"}
    # Written later by the user (a PATCH), the assignment fails the signature check the plugin makes.
    uid = created.metadata.uid
    doc = Assignment(node="a100", pod_uid=uid, containers={"main": {"nvidia.com/mps-core": ResourceAssignment(
        ("GPU-x",), ("GPU-x::core::0",), core=100)}})
    value = json.dumps({**doc.to_dict(), "signature": base64.urlsafe_b64encode(b"\0" * 64).decode().rstrip("=")})
    core.patch_namespaced_pod("sneaky", "default", {"metadata": {"annotations": {ANNOTATION_ASSIGNMENT: value}}})
    stored = srv.registry.get("pods", "sneaky", "default")["metadata"]["annotations"][ANNOTATION_ASSIGNMENT]
    with pytest.raises(AssignmentError, match="bad signature"):
        verify_assignment(stored, uid, load_public_key(str(workdir / "extender.pub")))


def test_the_users_policy_annotation_is_kept_and_an_unknown_policy_refused(cluster):
    _, core, _, _ = cluster
    created = core.create_namespaced_pod("default", gpu_pod(
        "binpacked", {"nvidia.com/mps-core": 10, "nvidia.com/mps-memory": 1},
        annotations={"tessera.io/policy": "binpack", "tessera.io/allocated": "forged"}))
    assert created.metadata.annotations == {"tessera.io/policy": "binpack"}
    message = _refusal(core, gpu_pod("typo", {"nvidia.com/mps-core": 10}, annotations={"tessera.io/policy": "bin-pack"}))
    assert "tessera.io/policy: 'bin-pack' is not one of fragmentation, binpack" in message


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_apply_shows_the_refusal(cluster, tmp_path):
    _, _, kubeconfig, _ = cluster
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(gpu_pod("from-kubectl", {"nvidia.com/mps-memory": 4})))
    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
                          "apply", "-f", str(manifest)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert 'admission webhook "pods.tessera.io" denied the request' in out.stderr
    assert "nvidia.com/mps-memory needs nvidia.com/mps-core on the same GPU" in out.stderr


def test_pods_naming_another_scheduler_keep_it_and_are_still_checked(cluster):
    _, core, _, _ = cluster
    batch = core.create_namespaced_pod("default", gpu_pod("batch", {"nvidia.com/mps-core": 50}, scheduler="volcano"))
    assert batch.spec.scheduler_name == "volcano"
    assert batch.spec.containers[0].resources.limits["nvidia.com/mps-memory"] == "7"  # completed all the same
    message = _refusal(core, gpu_pod("bad-batch", {"nvidia.com/mps-core": 150}, scheduler="volcano"))
    assert "150 is over 100 but not in whole hundreds" in message
    # A pod that names no scheduler gets default-scheduler from the API server, and is routed.
    unnamed = gpu_pod("unnamed", {"nvidia.com/gpu": 1})
    del unnamed["spec"]["schedulerName"]
    assert core.create_namespaced_pod("default", unnamed).spec.scheduler_name == "tessera-scheduler"


def test_the_routed_schedulers_come_from_the_config():
    config = parse_config({"version": "v1", "extender": {"routed_schedulers": ["default-scheduler", "legacy"]}})
    admission = PodAdmission(config.extender.scheduler_name, lambda: (15, 40),
                             routed_schedulers=config.extender.routed_schedulers)

    def scheduler_after_admission(name: str | None) -> str | None:
        pod = gpu_pod("p", {"nvidia.com/gpu": 1}, scheduler=name or "")
        response = admission.review({"kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": "default",
                                     "object": pod})
        patch = json.loads(base64.b64decode(response.get("patch") or "W10="))
        return next((op["value"] for op in patch if op["path"] == "/spec/schedulerName"), pod["spec"]["schedulerName"])

    assert ExtenderConfig().routed_schedulers == ["default-scheduler"]
    assert scheduler_after_admission("legacy") == "tessera-scheduler"
    assert scheduler_after_admission("default-scheduler") == "tessera-scheduler"
    assert scheduler_after_admission(None) == "tessera-scheduler"
    assert scheduler_after_admission("volcano") == "volcano"
