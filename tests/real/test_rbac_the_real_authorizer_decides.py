"""Each daemon runs with the ServiceAccount deploy/ gives it, and the real authorizer (RBAC) decides:
it may do what it needs (the other tests show it working) and is refused one step beyond. Asked
through the API server's own SubjectAccessReview (``kubectl auth can-i --as``), and once for real
with the daemon's own token."""

from __future__ import annotations

import json

import kubernetes
import pytest

from tessera import NAMESPACE

SA = "system:serviceaccount:tessera-system:"
CASES = [
    # (daemon's ServiceAccount, verb, resource, namespace or "", allowed)
    ("tessera-extender", "list", "nodes", "", True),
    ("tessera-extender", "watch", "pods", "", True),
    ("tessera-extender", "create", "pods/binding", "default", True),
    ("tessera-extender", "update", "leases.coordination.k8s.io/tessera-extender", NAMESPACE, True),
    ("tessera-extender", "patch", "pods", "default", False),          # its ledger goes in the Binding only
    ("tessera-extender", "delete", "pods", "default", False),         # preemption is kube-scheduler's
    ("tessera-extender", "update", "leases.coordination.k8s.io/tessera-scheduler", NAMESPACE, False),
    ("tessera-extender", "get", "secrets", NAMESPACE, False),
    ("tessera-device-plugin", "patch", "nodes", "", True),
    ("tessera-device-plugin", "patch", "pods", "default", True),
    ("tessera-device-plugin", "create", "pods/eviction", "default", True),
    ("tessera-device-plugin", "create", "pods/binding", "default", False),
    ("tessera-device-plugin", "delete", "pods", "default", False),
    ("tessera-device-plugin", "patch", "nodes/status", "", False),
    ("tessera-device-plugin", "list", "secrets", "", False),
    ("tessera-exporter", "get", "nodes", "", True),
    ("tessera-exporter", "create", "events", "default", True),
    ("tessera-exporter", "list", "pods", "", False),
    ("tessera-exporter", "patch", "nodes", "", False),
    ("tessera-scheduler", "create", "pods/binding", "default", True),
    ("tessera-scheduler", "update", "leases.coordination.k8s.io/tessera-scheduler", NAMESPACE, True),
    ("tessera-scheduler", "get", "secrets", NAMESPACE, False),
    ("tessera-scheduler", "patch", "nodes", "", False),
]


@pytest.mark.parametrize("account,verb,resource,namespace,allowed", CASES,
                         ids=[f"{a}-{v}-{r.split('.')[0]}-{'yes' if ok else 'no'}" for a, v, r, _, ok in CASES])
def test_each_daemon_may_do_what_it_needs_and_no_more(real_cluster, account, verb, resource, namespace, allowed):
    where = ["-n", namespace] if namespace else []
    kind, _, sub = resource.partition("/")
    if sub and "." not in kind:            # pods/binding: a subresource (leases.x/name: a resource name)
        where += [f"--subresource={sub}"]
        resource = kind
    done = real_cluster.kubectl("auth", "can-i", verb, resource, *where, f"--as={SA}{account}", check=False)
    assert done.stdout.strip() == ("yes" if allowed else "no"), (done.stdout, done.stderr)


def test_the_extenders_own_token_is_refused_a_pod_delete(real_cluster, namespace):
    """Not only what RBAC says: a request with the running extender's token is refused by the API server."""
    core = real_cluster.core_v1(real_cluster.service_account_kubeconfig(NAMESPACE, "tessera-extender"))
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.delete_collection_namespaced_pod(namespace)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'User "system:serviceaccount:tessera-system:tessera-extender" cannot deletecollection' in message
