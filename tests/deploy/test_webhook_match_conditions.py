"""deploy/'s webhook matchConditions (CEL) decide what ever reaches the webhook: with failurePolicy Fail,
an expression that errors on some object refuses it cluster-wide, and one that lets a write through
unsent leaves the ledger open. Evaluated here with a pure-Python CEL (cel-python) on the objects the
API server would pass."""

from __future__ import annotations

from pathlib import Path

import celpy
import pytest
import yaml

from extender.webhook import PodAdmission

REPO = Path(__file__).resolve().parents[2]
ASSIGNMENT = {"tessera.io/assignment": '{"version": 1}'}
EXTENDER = "system:serviceaccount:tessera-system:tessera-extender"


def _webhook(entry: int = 0) -> dict:
    return yaml.safe_load((REPO / "deploy/base/webhook.yaml").read_text())["webhooks"][entry]


def sent(operation: str, obj: dict, old: dict | None = None, sub_resource: str = "",
         user: str = "system:serviceaccount:kube-system:replicaset-controller", entry: int = 0) -> bool:
    """Whether the API server sends this request to Tessera's webhook (``entry`` of its list), by the deploy
    file's matchConditions."""
    env = celpy.Environment()
    for condition in _webhook(entry)["matchConditions"]:
        program = env.program(env.compile(condition["expression"]))
        # As the API server builds it: an AdmissionRequest's empty fields are left out (omitempty), so a
        # pod CREATE has no subResource key at all and `request.subResource` there is an error.
        request = {"operation": operation, "userInfo": {"username": user}} | (
            {"subResource": sub_resource} if sub_resource else {})
        activation = {"request": celpy.json_to_cel(request),
                      "object": celpy.json_to_cel(obj), "oldObject": celpy.json_to_cel(old)}
        if not program.evaluate(activation):
            return False
    return True


def pod(annotations: dict | None = None, limits: dict | None = None) -> dict:
    meta = {"name": "p", "namespace": "team-a"} | ({"annotations": annotations} if annotations is not None else {})
    container = {"name": "main"} | ({"resources": {"limits": limits}} if limits else {})
    return {"kind": "Pod", "metadata": meta, "spec": {"containers": [container]}}


def binding(annotations: dict | None = None) -> dict:
    meta = {"name": "p", "namespace": "team-a"} | ({"annotations": annotations} if annotations is not None else {})
    return {"kind": "Binding", "metadata": meta, "target": {"kind": "Node", "name": "gpu-0"}}


def claim_pod(limits: dict | None = None, claims: list | None = None) -> dict:
    doc = pod(limits=limits)
    if claims is not None:
        doc["spec"]["resourceClaims"] = claims
    return doc


@pytest.mark.parametrize(("obj", "expected"), [
    (claim_pod(claims=[{"name": "gpu", "resourceClaimTemplateName": "share"}]), True),
    (claim_pod(), False),                                                          # no claim: a CPU pod
    (claim_pod(claims=[]), False),
    (claim_pod(limits={"nvidia.com/gpu": "1"}, claims=[{"name": "x", "resourceClaimName": "x"}]), False),  # entry 0's
    ({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"resourceClaims": [{"name": "x"}]}}, False),  # no containers
], ids=["claims", "no-claims", "empty-claims", "nvidia-resources-too", "no-containers"])
def test_what_reaches_the_dra_entry(obj, expected):
    """Pods with claims and no nvidia.com/* resource reach the second entry, which routes those asking
    Tessera's classes; a pod with nvidia.com/* resources reaches the first one only (never twice)."""
    assert sent("CREATE", obj, entry=1) is expected
    assert not (expected and sent("CREATE", obj))


def test_the_dra_entry_asks_only_namespaces_that_opted_in():
    """No namespace's DRA pods wait on Tessera unless its admin labelled it (DRA scoring is off by default)."""
    hook = _webhook(1)
    assert {"key": "tessera.io/dra-scoring", "operator": "In", "values": ["on"]} in \
        hook["namespaceSelector"]["matchExpressions"]
    assert hook["objectSelector"]["matchExpressions"] == [
        {"key": "tessera.io/dra-scoring", "operator": "NotIn", "values": ["off"]}]
    assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] <= 2


def test_the_rules_cover_pods_their_status_and_their_bindings():
    resources = {r for rule in _webhook()["rules"] for r in rule["resources"]}
    assert resources == {"pods", "pods/status", "pods/binding"}


@pytest.mark.parametrize(("operation", "obj", "old", "sub", "expected"), [
    ("CREATE", pod(limits={"nvidia.com/gpu": "1"}), None, "", True),
    ("CREATE", pod(), None, "", False),  # a CPU pod never waits on Tessera
    ("CREATE", pod(annotations=ASSIGNMENT), None, "", True),  # stripped at creation
    ("UPDATE", pod(annotations=ASSIGNMENT), pod(), "", True),  # added
    ("UPDATE", pod(), pod(annotations=ASSIGNMENT), "", True),  # every annotation removed
    ("UPDATE", pod(annotations=ASSIGNMENT), pod(annotations=ASSIGNMENT), "", False),  # unchanged
    ("UPDATE", pod(annotations=ASSIGNMENT), pod(), "status", True),  # through pods/status
    ("UPDATE", pod(annotations={"a": "b"}), pod(), "status", False),  # the kubelet's status writes
    ("CREATE", binding(), None, "binding", False),  # kube-scheduler binding any pod
    ("CREATE", binding(ASSIGNMENT), None, "binding", True),  # a Binding writing the ledger
    ("CREATE", binding({"other": "x"}), None, "binding", False),
], ids=["gpu-pod", "cpu-pod", "create-with-ledger", "update-adds", "update-removes-all", "update-keeps",
        "status-adds", "status-other", "binding-plain", "binding-ledger", "binding-other"])
def test_what_reaches_the_webhook(operation, obj, old, sub, expected):
    assert sent(operation, obj, old, sub) is expected


def test_tessera_s_own_writes_skip_the_webhook_and_its_names_are_the_ledger_writers():
    """The webhook allows Tessera's ServiceAccounts anyway: the API server need not call it for the
    extender's Bindings or the plugin's ledger writes (one round trip less per bind)."""
    from tessera.config import ExtenderConfig

    writers = ExtenderConfig().ledger_writers
    assert sorted(writers) == sorted([EXTENDER, "system:serviceaccount:tessera-system:tessera-device-plugin"])
    for user in writers:
        assert sent("CREATE", binding(ASSIGNMENT), None, "binding", user=user) is False
        assert sent("UPDATE", pod(annotations=ASSIGNMENT), pod(), "", user=user) is False
    assert sent("CREATE", binding(ASSIGNMENT), None, "binding", user="system:serviceaccount:team-a:default") is True


def test_the_webhook_refuses_a_binding_with_ledger_annotations_from_anyone_but_tessera():
    admission = PodAdmission("tessera-scheduler", lambda: None, ledger_writers=[EXTENDER])

    def review(user: str, annotations: dict | None) -> dict:
        return admission.review({"kind": {"kind": "Binding"}, "operation": "CREATE", "namespace": "team-a",
                                 "name": "p", "subResource": "binding", "object": binding(annotations),
                                 "userInfo": {"username": user}})

    refused = review("alice", ASSIGNMENT)
    assert refused["allowed"] is False and "tessera.io/assignment" in refused["status"]["message"]
    assert review(EXTENDER, ASSIGNMENT)["allowed"] is True
    assert review("system:kube-scheduler", None)["allowed"] is True


def test_the_webhook_refuses_a_status_update_that_writes_the_ledger():
    admission = PodAdmission("tessera-scheduler", lambda: None, ledger_writers=[EXTENDER])
    answer = admission.review({"kind": {"kind": "Pod"}, "operation": "UPDATE", "subResource": "status",
                               "object": pod(annotations=ASSIGNMENT), "oldObject": pod(),
                               "userInfo": {"username": "alice"}})
    assert answer["allowed"] is False
