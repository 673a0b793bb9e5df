"""What a user sees at ``kubectl apply -f`` on the real API server: the webhook's refusals with
their reason, mps-memory completed before the quota counts it, the per-tenant ResourceQuota example
enforced by the real quota admission, and a user's own patch of tessera.io/* refused."""

from __future__ import annotations

import json

import yaml

from realtier import pod, read_pod, wait_running
from tessera import ANNOTATION_ASSIGNMENT
from tessera.daemonproc import REPO_ROOT


def apply_pod(cluster, manifest: dict, **kwargs):
    return cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), check=False, **kwargs)


def test_malformed_request_is_refused_at_kubectl_apply_with_the_webhooks_reason(real_cluster, namespace):
    done = apply_pod(real_cluster, pod("half-and-a-half", {"nvidia.com/mps-core": 150}, namespace=namespace))
    assert done.returncode != 0
    assert 'admission webhook "pods.tessera.io" denied the request' in done.stderr
    assert "mps-core" in done.stderr and "150" in done.stderr
    assert read_pod(real_cluster.core_v1(), namespace, "half-and-a-half") is None


def test_mps_memory_is_completed_before_the_api_server_stores_the_pod(real_cluster, namespace):
    done = apply_pod(real_cluster, pod("share", {"nvidia.com/mps-core": 50}, namespace=namespace,
                                                   node_selector={"tessera.test/nowhere": "true"}))
    assert done.returncode == 0, done.stderr
    stored = read_pod(real_cluster.core_v1(), namespace, "share")
    limits = stored["spec"]["containers"][0]["resources"]["limits"]
    # the default cluster's only MPS card has 80 GiB: 50 % of it
    assert limits["nvidia.com/mps-memory"] == "40"
    assert stored["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/mps-memory"] == "40"


def test_the_resourcequota_example_is_enforced_by_the_real_quota_admission(real_cluster, namespace):
    quota = yaml.safe_load((REPO_ROOT / "deploy/examples/resourcequota.yaml").read_text())
    quota["metadata"]["namespace"] = namespace
    real_cluster.apply([quota])
    real_cluster.wait_for(lambda: (q := real_cluster.core_v1().read_namespaced_resource_quota(
        "tessera-gpus", namespace)).status and q.status.hard, what="the quota controller's first status")
    # Quota admission counts pods at creation; these stay Pending (no node matches), using no GPU.
    nowhere = {"tessera.test/nowhere": "true"}
    assert apply_pod(real_cluster, pod("four", {"nvidia.com/gpu": 4}, namespace=namespace,
                                       node_selector=nowhere)).returncode == 0
    done = apply_pod(real_cluster, pod("one-more", {"nvidia.com/gpu": 1}, namespace=namespace, node_selector=nowhere))
    assert done.returncode != 0
    assert "exceeded quota: tessera-gpus" in done.stderr and "requests.nvidia.com/gpu=1" in done.stderr
    # mps-memory is counted as completed by the webhook: 4 x 40 GiB fill the 160 GiB of the example
    for i in range(4):
        assert apply_pod(real_cluster, pod(f"s{i}", {"nvidia.com/mps-core": 50}, namespace=namespace,
                                           node_selector=nowhere)).returncode == 0
    done = apply_pod(real_cluster, pod("s4", {"nvidia.com/mps-core": 10}, namespace=namespace, node_selector=nowhere))
    assert done.returncode != 0 and "requests.nvidia.com/mps-memory" in done.stderr


def tenant_kubeconfig(cluster, namespace: str, user: str):
    """A user with the built-in `edit` role in ``namespace`` only, by client certificate."""
    cluster.kubectl("create", "rolebinding", f"{user}-edit", "--clusterrole=edit", f"--user={user}",
                    f"--namespace={namespace}")
    return cluster.control.kubeconfig_for(f"user-{user}", user, ("tenants",))


def test_a_tenant_cannot_write_tessera_annotations_on_their_own_pod(real_cluster, namespace):
    alice = tenant_kubeconfig(real_cluster, namespace, "alice")
    done = apply_pod(real_cluster, pod("mine", {"nvidia.com/gpu": 1}, namespace=namespace,
                                       annotations={ANNOTATION_ASSIGNMENT: "forged"}), kubeconfig=alice)
    assert done.returncode == 0, done.stderr
    core = real_cluster.core_v1()
    running = wait_running(core, namespace, "mine")
    signed = running["metadata"]["annotations"][ANNOTATION_ASSIGNMENT]
    assert signed != "forged"                        # stripped at creation; the extender's signed one is there

    patch = json.dumps({"metadata": {"annotations": {ANNOTATION_ASSIGNMENT: "rewritten"}}})
    done = real_cluster.kubectl("-n", namespace, "patch", "pod", "mine", "--type=merge", "-p", patch,
                                kubeconfig=alice, check=False)
    assert done.returncode != 0
    assert "tessera.io/* annotations of an existing pod are written by Tessera only" in done.stderr
    assert "alice may not add, change or remove them" in done.stderr
    done = real_cluster.kubectl("-n", namespace, "annotate", "pod", "mine", f"{ANNOTATION_ASSIGNMENT}-",
                                kubeconfig=alice, check=False)
    assert done.returncode != 0 and "written by Tessera only" in done.stderr
    assert read_pod(core, namespace, "mine")["metadata"]["annotations"][ANNOTATION_ASSIGNMENT] == signed
