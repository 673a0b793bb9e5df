"""kubectl writes to the embedded API server with its default flags: ``apply -f`` and ``create -f``
(which validate against the server's OpenAPI first), the ``create <kind>`` commands and ``drain``
(which send protobuf), and a webhook's refusal reaches the user through ``kubectl apply``."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import yaml

from apiserver_helpers import http, kubectl, node, pod
from simcluster.apiserver import ApiServer
from simcluster.cluster import NodeSpec
from simcluster.lightnodes import light_node_object
from tessera.pki import write_webhook_pki

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")

REPO = Path(__file__).resolve().parents[3]


def _ok(out) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_apply_and_create_from_files_validate_against_the_servers_schema(server, tmp_path):
    manifest = tmp_path / "web.yaml"
    manifest.write_text(yaml.safe_dump(pod("web", labels={"app": "web"})))
    assert _ok(kubectl(server, tmp_path, "apply", "-f", str(manifest))).strip() == "pod/web created"
    # Applied again with a change: kubectl computes the patch from the schema's patch strategies.
    changed = pod("web", labels={"app": "web", "tier": "front"})
    manifest.write_text(yaml.safe_dump(changed))
    assert _ok(kubectl(server, tmp_path, "apply", "-f", str(manifest))).strip() == "pod/web configured"
    assert server.registry.get("pods", "web", "default")["metadata"]["labels"] == {"app": "web", "tier": "front"}

    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "mps"}}
    assert _ok(kubectl(server, tmp_path, "create", "-f", "-", stdin=json.dumps(config))).strip() == "configmap/settings created"
    # Client-side validation with the served schema: a misspelt field is refused before it is sent.
    typo = pod("typo")
    typo["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    out = kubectl(server, tmp_path, "create", "-f", "-", stdin=json.dumps(typo))
    assert out.returncode != 0
    assert 'unknown field "imagePullPolicyy" in io.k8s.api.core.v1.Container' in out.stderr
    assert server.registry.list("pods", "default", field_selector="metadata.name=typo") == []


def test_create_subcommands_and_drain_are_understood_in_protobuf(server, tmp_path):
    assert _ok(kubectl(server, tmp_path, "create", "namespace", "team-a")).strip() == "namespace/team-a created"
    assert server.registry.get("namespaces", "team-a")["status"]["phase"] == "Active"
    _ok(kubectl(server, tmp_path, "-n", "team-a", "create", "configmap", "cfg", "--from-literal=mode=mps"))
    _ok(kubectl(server, tmp_path, "-n", "team-a", "create", "secret", "generic", "token", "--from-literal=key=s3cret"))
    _ok(kubectl(server, tmp_path, "-n", "team-a", "create", "quota", "gpus", "--hard=requests.nvidia.com/gpu=2"))
    assert server.registry.get("configmaps", "cfg", "team-a")["data"] == {"mode": "mps"}
    secret = server.registry.get("secrets", "token", "team-a")
    assert secret["type"] == "Opaque" and base64.b64decode(secret["data"]["key"]) == b"s3cret"
    quota = server.registry.get("resourcequotas", "gpus", "team-a")
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "2"}

    # kubectl drain evicts through pods/eviction with a protobuf Eviction.
    server.registry.create("nodes", node("gpu-node-1"))
    server.registry.create("pods", pod("worker", "team-a", nodeName="gpu-node-1"))
    out = _ok(kubectl(server, tmp_path, "drain", "gpu-node-1", "--force", "--grace-period=0", "--timeout=60s"))
    assert "pod/worker evicted" in out
    assert server.registry.list("pods", "team-a") == []


def test_a_body_in_protobuf_for_a_kind_not_read_as_protobuf_names_what_is_accepted(server):
    code, body = http(server, "POST", "/api/v1/namespaces/default/pods", b"k8s\x00\x0a\x0b\x0a\x02v1\x12\x03Pod",
                      "application/vnd.kubernetes.protobuf")
    assert code == 415 and body["reason"] == "UnsupportedMediaType"
    assert body["message"].endswith("accepted media types include: application/json, application/yaml")
    code, body = http(server, "POST", "/api/v1/namespaces", b"not protobuf", "application/vnd.kubernetes.protobuf")
    assert code == 400 and body["reason"] == "BadRequest"


def test_explain_reads_the_served_schema(server, tmp_path):
    out = _ok(kubectl(server, tmp_path, "explain", "resourcequota.spec"))
    assert "KIND:       ResourceQuota" in out
    assert "hard\t<map[string]string>" in out and "scopes\t<[]string>" in out


@pytest.fixture
def webhook_server(tmp_path):
    """An API server calling Tessera's own webhook (the extender), configured by kubectl from
    deploy/base/webhook.yaml."""
    from simcluster.extenders import start_extender

    ca = write_webhook_pki(tmp_path, ["tessera-extender.tessera-system.svc"], ["127.0.0.1"], days=1)
    port = {}
    with ApiServer(service_resolver=lambda ns, name, p: ("127.0.0.1", port["webhook"])) as server:
        server.registry.create("nodes", light_node_object(NodeSpec("t4", "T4", 1, mode="mps")))
        ext = start_extender(server.write_kubeconfig(tmp_path / "extender.kubeconfig"), tmp_path,
                             leader_election=False, tls_cert_path=str(tmp_path / "tls.crt"),
                             tls_key_path=str(tmp_path / "tls.key"))
        port["webhook"] = ext.webhook_port
        config = yaml.safe_load((REPO / "deploy" / "base" / "webhook.yaml").read_text())
        config["webhooks"][0]["clientConfig"]["caBundle"] = ca
        try:
            _ok(kubectl(server, tmp_path, "apply", "-f", "-", stdin=yaml.safe_dump(config)))
            yield server
        finally:
            ext.stop()


def test_a_webhook_refusal_reaches_the_user_through_kubectl_apply(webhook_server, tmp_path):
    server = webhook_server
    manifest = tmp_path / "half.yaml"
    bad = pod("half")
    bad["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/mps-memory": "4"}}
    manifest.write_text(yaml.safe_dump(bad))
    out = kubectl(server, tmp_path, "apply", "-f", str(manifest))
    assert out.returncode == 1
    assert 'admission webhook "pods.tessera.io" denied the request' in out.stderr
    assert "nvidia.com/mps-memory needs nvidia.com/mps-core on the same GPU" in out.stderr
    assert server.registry.list("pods", "default", field_selector="metadata.name=half") == []
