"""deploy/ renders with ``kubectl kustomize`` (default install and overlays/production), and every
object validates against the Kubernetes 1.32 schema (strict: unknown fields fail). Objects of
other APIs are checked by hand, as said per kind."""

from __future__ import annotations

import base64
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from manifests import DEPLOY, find, flag, pod_templates, scheduler_configuration
from simcluster.scheduling import WEBHOOK_RULES
from tessera import service_account_username
from tessera.assignment import load_private_key, load_public_key
from tessera.config import ExtenderConfig

KUBERNETES_VERSION = "1.32.0"
# resource.k8s.io/v1 (DRA: the DeviceClass of the DRA driver) is served from Kubernetes 1.34 on.
DRA_KUBERNETES_VERSION = "1.34.0"
# Not in the Kubernetes schema: custom resources (their CRDs belong to cert-manager and the
# Prometheus Operator) are checked for the fields Tessera relies on below.
CUSTOM_KINDS = {"Certificate", "Issuer", "PodMonitor", "PrometheusRule"}
# KubeSchedulerConfiguration v1 (k8s.io/kube-scheduler/config/v1 types.go): the fields it has.
SCHEDULER_FIELDS = {"apiVersion", "kind", "parallelism", "leaderElection", "clientConnection", "enableProfiling",
                    "enableContentionProfiling", "percentageOfNodesToScore", "podInitialBackoffSeconds",
                    "podMaxBackoffSeconds", "profiles", "extenders", "delayCacheUntilActive"}
EXTENDER_FIELDS = {"urlPrefix", "filterVerb", "preemptVerb", "prioritizeVerb", "weight", "bindVerb", "enableHTTPS",
                   "tlsConfig", "httpTimeout", "nodeCacheCapable", "managedResources", "ignorable"}
LEADER_FIELDS = {"leaderElect", "leaseDuration", "renewDeadline", "retryPeriod", "resourceLock", "resourceName",
                 "resourceNamespace"}
PROFILE_FIELDS = {"schedulerName", "percentageOfNodesToScore", "plugins", "pluginConfig"}


def test_every_object_validates_against_the_kubernetes_schema(rendered):
    for overlay, objects in rendered.items():
        kinds = set()
        for obj in objects:
            kinds.add(obj["kind"])
            if obj["kind"] in CUSTOM_KINDS:
                continue
            try:
                version = DRA_KUBERNETES_VERSION if obj["apiVersion"].startswith("resource.k8s.io/") else KUBERNETES_VERSION
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}")
        assert {"Deployment", "DaemonSet", "MutatingWebhookConfiguration", "ClusterRole", "Secret"} <= kinds


def test_examples_validate_and_ask_for_each_kind_of_gpu():
    asked = set()
    for path in sorted((DEPLOY / "examples").glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            if obj["kind"] == "Pod":
                for c in obj["spec"]["containers"]:
                    asked.add(tuple(sorted(c["resources"]["limits"].items())))
            else:
                assert obj["kind"] == "ResourceQuota"
                assert {"requests.nvidia.com/gpu", "requests.nvidia.com/mps-core", "requests.nvidia.com/mps-memory",
                        "requests.nvidia.com/gpu.shared"} <= set(obj["spec"]["hard"])
    assert asked == {(("nvidia.com/gpu", 1),), (("nvidia.com/gpu", 2),), (("nvidia.com/mig-1g.10gb", 1),),
                     (("nvidia.com/mps-core", 50), ("nvidia.com/mps-memory", 8)), (("nvidia.com/gpu.shared", 1),)}


def test_scheduler_configuration_has_only_known_fields(rendered):
    config = scheduler_configuration(rendered["default"])
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1" and config["kind"] == "KubeSchedulerConfiguration"
    assert set(config) <= SCHEDULER_FIELDS
    assert set(config["leaderElection"]) <= LEADER_FIELDS and config["leaderElection"]["leaderElect"] is True
    for profile in config["profiles"]:
        assert set(profile) <= PROFILE_FIELDS
    for extender in config["extenders"]:
        assert set(extender) <= EXTENDER_FIELDS
        assert all(set(m) <= {"name", "ignoredByScheduler"} for m in extender.get("managedResources", []))
    assert config["percentageOfNodesToScore"] == 100


def test_keys_from_make_keys_reach_the_right_pods(rendered, deploy_copy: Path):
    objects = rendered["default"]
    signing = find(objects, "Secret", "tessera-extender-signing-key")
    public = find(objects, "Secret", "tessera-assignment-public-key")
    # The pair matches: the public key in the nodes' Secret is the private key's half.
    private_pem, public_pem = (base64.b64decode(signing["data"]["extender.key"]),
                               base64.b64decode(public["data"]["extender.pub"]))
    key_file, pub_file = deploy_copy / "keys" / "extender.key", deploy_copy / "keys" / "extender.pub"
    assert private_pem == key_file.read_bytes() and public_pem == pub_file.read_bytes()
    assert load_private_key(str(key_file)).public_key().public_bytes_raw() == \
        load_public_key(str(pub_file)).public_bytes_raw()
    pods = pod_templates(objects)

    def secrets_of(workload: str) -> set[str]:
        return {v["secret"]["secretName"] for v in pods[workload].get("volumes", []) if "secret" in v}

    assert signing["metadata"]["name"] in secrets_of("tessera-extender"), "the extender signs"
    assert all(signing["metadata"]["name"] not in secrets_of(w) for w in pods if w != "tessera-extender"), \
        "only the extender reads the private key"
    assert public["metadata"]["name"] in secrets_of("tessera-device-plugin")
    for webhook in find(objects, "MutatingWebhookConfiguration", "tessera")["webhooks"]:
        assert webhook["clientConfig"]["caBundle"] == (deploy_copy / "keys" / "webhook" / "ca.b64").read_text()
    assert find(objects, "Secret", "tessera-webhook-tls")["type"] == "kubernetes.io/tls"


def test_production_overlay_uses_cert_manager_and_monitoring(rendered):
    objects = rendered["production"]
    webhook = find(objects, "MutatingWebhookConfiguration", "tessera")
    certificate = find(objects, "Certificate", "tessera-webhook")
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "tessera-system/tessera-webhook"
    assert all("caBundle" not in hook["clientConfig"] for hook in webhook["webhooks"])
    tls_volume = [v for v in pod_templates(objects)["tessera-extender"]["volumes"] if v["name"] == "webhook-tls"][0]
    assert tls_volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    service = webhook["webhooks"][0]["clientConfig"]["service"]
    assert f"{service['name']}.{service['namespace']}.svc" in certificate["spec"]["dnsNames"]
    assert find(objects, "Issuer", certificate["spec"]["issuerRef"]["name"])
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].startswith("tessera-webhook")]
    assert {o["kind"] for o in objects} >= {"PodMonitor", "PrometheusRule"}


@pytest.mark.parametrize("entry", [0, 1])
def test_webhook_reaches_the_extender_service_and_skips_system_namespaces(rendered, entry):
    objects = rendered["default"]
    hook = find(objects, "MutatingWebhookConfiguration", "tessera")["webhooks"][entry]
    service = find(objects, "Service", hook["clientConfig"]["service"]["name"])
    port = [p for p in service["spec"]["ports"] if p["port"] == hook["clientConfig"]["service"]["port"]][0]
    extender = pod_templates(objects)["tessera-extender"]["containers"][0]
    listen = flag(extender["args"], "webhook-listen")
    target = [p for p in extender["ports"] if p["name"] == port["targetPort"]][0]
    assert listen.endswith(f":{target['containerPort']}")
    assert hook["clientConfig"]["service"]["path"] == "/mutate"
    # Pod creations and updates of the pod itself, as the embedded cluster registers it; then status
    # updates and Bindings, which can carry tessera.io/* annotations too (matchConditions send only those:
    # the embedded API server evaluates no CEL, so it registers the first rule alone).
    core = {"apiGroups": [""], "apiVersions": ["v1"], "scope": "Namespaced"}
    if entry == 0:
        assert hook["rules"] == [{"operations": ["CREATE", "UPDATE"], "resources": ["pods"], **core},
                                 {"operations": ["UPDATE"], "resources": ["pods/status"], **core},
                                 {"operations": ["CREATE"], "resources": ["pods/binding"], **core}]
        assert hook["rules"][:1] == WEBHOOK_RULES
    else:  # the DRA entry: pod creations only, and a failure never refuses one (routing only adds scores)
        assert hook["rules"] == [{"operations": ["CREATE"], "resources": ["pods"], **core}]
        assert hook["failurePolicy"] == "Ignore"
    excluded = hook["namespaceSelector"]["matchExpressions"][0]
    assert excluded["operator"] == "NotIn" and set(excluded["values"]) == {"kube-system", "tessera-system"}


def test_only_the_service_accounts_deploy_runs_tessera_as_may_write_its_pod_annotations(rendered):
    """The webhook's default ``extender.ledger_writers`` are the ServiceAccounts deploy/ runs the device plugin
    and the extender as: a renamed account would have its own ledger writes refused."""
    objects = rendered["default"]
    templates = pod_templates(objects)
    runs_as = {templates[name]["serviceAccountName"] for name in ("tessera-device-plugin", "tessera-extender")}
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "ServiceAccount"}
    assert {service_account_username(ns, name) for ns, name in accounts if name in runs_as} == \
        set(ExtenderConfig().ledger_writers)
