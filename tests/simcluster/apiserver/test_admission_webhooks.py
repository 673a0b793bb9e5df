"""Webhooks configured on the API server are called over verified HTTPS and obeyed."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import kubernetes
from kubernetes import client
from kubernetes.client.rest import ApiException

from apiserver_helpers import pod
from simcluster.apiserver import ApiServer

SERVICE_DNS = "tessera-webhook.tessera-system.svc"


def _ca(name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVICE_DNS)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVICE_DNS), x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class _Webhook(BaseHTTPRequestHandler):
    reviews: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).reviews.append((self.path, review))
        req = review["request"]
        response = {"uid": req["uid"], "allowed": True}
        labels = req["object"]["metadata"].get("labels") or {}
        if self.path.startswith("/mutate"):
            patch = [{"op": "add", "path": "/metadata/annotations", "value": {"tessera.io/admitted": "yes"}},
                     {"op": "replace", "path": "/spec/schedulerName", "value": "tessera-scheduler"}]
            response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
        elif self.path.startswith("/validate") and labels.get("deny") == "yes":
            response = {"uid": req["uid"], "allowed": False,
                        "status": {"code": 403, "message": "mps-memory without mps-core is not allowed"}}
        elif self.path.startswith("/validate") and labels.get("deny") == "silent":
            response = {"uid": req["uid"], "allowed": False}
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca_key, ca_cert = _ca("tessera-webhook-ca")
    leaf_key, leaf_cert = _leaf(ca_key, ca_cert)
    _, other_ca = _ca("someone-else")
    d = tmp_path_factory.mktemp("pki")
    (d / "tls.crt").write_bytes(_pem(leaf_cert))
    (d / "tls.key").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return {"dir": d, "ca": base64.b64encode(_pem(ca_cert)).decode(), "wrong_ca": base64.b64encode(_pem(other_ca)).decode()}


@pytest.fixture(scope="module")
def webhook_port(pki):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["dir"] / "tls.crt", pki["dir"] / "tls.key")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


@pytest.fixture
def cluster(webhook_port):
    _Webhook.reviews.clear()
    with ApiServer(service_resolver=lambda ns, name, port: ("127.0.0.1", webhook_port)) as srv:
        api = client.ApiClient(client.Configuration(host=srv.url))
        yield srv, client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)


def _hook(name, path, ca, *, failure="Fail", service=True, port=None, ns_selector=None):
    cc = ({"service": {"namespace": "tessera-system", "name": "tessera-webhook", "path": path, "port": 443}}
          if service else {"url": f"https://127.0.0.1:{port}{path}"})
    cc["caBundle"] = ca
    hook = {"name": name, "clientConfig": cc, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": failure,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}
    if ns_selector:
        hook["namespaceSelector"] = ns_selector
    return hook


def test_mutating_webhook_patches_the_pod(cluster, pki):
    srv, core, adm = cluster
    adm.create_mutating_webhook_configuration({"metadata": {"name": "tessera"},
                                               "webhooks": [_hook("pods.tessera.io", "/mutate", pki["ca"])]})
    created = core.create_namespaced_pod("default", pod("p"))
    assert created.metadata.annotations == {"tessera.io/admitted": "yes"}
    assert created.spec.scheduler_name == "tessera-scheduler"
    path, review = _Webhook.reviews[-1]
    assert path == "/mutate?timeout=10s"
    req = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and req["operation"] == "CREATE"
    assert req["kind"] == {"group": "", "version": "v1", "kind": "Pod"} and req["namespace"] == "default"
    # Only pods match the rules: a config map goes straight through.
    calls = len(_Webhook.reviews)
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    assert len(_Webhook.reviews) == calls


def test_validating_webhook_refuses_with_its_message(cluster, pki, webhook_port):
    srv, core, adm = cluster
    adm.create_validating_webhook_configuration({"metadata": {"name": "tessera"}, "webhooks": [
        _hook("validate.tessera.io", "/validate", pki["ca"], service=False, port=webhook_port)]})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod("bad", labels={"deny": "yes"}))
    status = json.loads(err.value.body)
    assert err.value.status == 403 and status["code"] == 403
    assert status["message"] == ('admission webhook "validate.tessera.io" denied the request: '
                                 "mps-memory without mps-core is not allowed")
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod("bad2", labels={"deny": "silent"}))
    assert err.value.status == 400
    assert json.loads(err.value.body)["message"] == 'admission webhook "validate.tessera.io" denied the request without explanation'
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == []
    core.create_namespaced_pod("default", pod("good"))


def test_wrong_ca_bundle_fails_closed_with_fail_policy(cluster, pki):
    srv, core, adm = cluster
    adm.create_mutating_webhook_configuration({"metadata": {"name": "tessera"},
                                               "webhooks": [_hook("pods.tessera.io", "/mutate", pki["wrong_ca"])]})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod("p"))
    status = json.loads(err.value.body)
    assert err.value.status == 500 and status["reason"] == "InternalError"
    assert status["message"].startswith('Internal error occurred: failed calling webhook "pods.tessera.io": '
                                        f'failed to call webhook: Post "https://{SERVICE_DNS}:443/mutate?timeout=10s"')
    assert "CERTIFICATE_VERIFY_FAILED" in status["message"]
    assert _Webhook.reviews == []


def test_wrong_ca_bundle_is_skipped_with_ignore_policy(cluster, pki):
    srv, core, adm = cluster
    adm.create_mutating_webhook_configuration({"metadata": {"name": "tessera"}, "webhooks": [
        _hook("pods.tessera.io", "/mutate", pki["wrong_ca"], failure="Ignore")]})
    created = core.create_namespaced_pod("default", pod("p"))
    assert created.metadata.annotations is None and created.spec.scheduler_name == "default-scheduler"


def test_namespace_selector_limits_the_webhook(cluster, pki):
    srv, core, adm = cluster
    core.create_namespace({"metadata": {"name": "gpu", "labels": {"tessera.io/webhook": "on"}}})
    core.create_namespace({"metadata": {"name": "plain"}})
    adm.create_mutating_webhook_configuration({"metadata": {"name": "tessera"}, "webhooks": [
        _hook("pods.tessera.io", "/mutate", pki["ca"], ns_selector={"matchLabels": {"tessera.io/webhook": "on"}})]})
    assert core.create_namespaced_pod("gpu", pod("a", "gpu")).spec.scheduler_name == "tessera-scheduler"
    assert core.create_namespaced_pod("plain", pod("b", "plain")).spec.scheduler_name == "default-scheduler"


def test_webhook_configuration_defaults(cluster, pki):
    srv, core, adm = cluster
    cfg = adm.create_mutating_webhook_configuration({"metadata": {"name": "t"}, "webhooks": [
        {k: v for k, v in _hook("pods.tessera.io", "/mutate", pki["ca"]).items() if k != "failurePolicy"}]})
    hook = cfg.webhooks[0]
    assert hook.failure_policy == "Fail" and hook.timeout_seconds == 10 and hook.match_policy == "Equivalent"


def test_the_webhook_is_told_who_calls_and_what_the_pod_was(cluster, pki, tmp_path):
    """As a real API server: a ServiceAccount's bearer token is ``system:serviceaccount:<ns>:<name>`` in the
    AdmissionReview's ``userInfo``, an UPDATE carries ``oldObject``, no credentials are the admin, and an
    unknown token is refused before anything else (401)."""
    srv, core, adm = cluster
    validating = _hook("validate.tessera.io", "/validate", pki["ca"])
    validating["rules"][0]["operations"] = ["CREATE", "UPDATE"]
    adm.create_validating_webhook_configuration({"metadata": {"name": "tessera"}, "webhooks": [validating]})
    core.create_namespaced_pod("default", pod("p", labels={"v": "1"}))
    assert _Webhook.reviews[-1][1]["request"]["userInfo"] == {"username": "system:admin",
                                                              "groups": ["system:masters", "system:authenticated"]}
    token = srv.service_account_token("tessera-system", "tessera-device-plugin")
    plugin = client.CoreV1Api(kubernetes.config.new_client_from_config(
        str(srv.write_kubeconfig(tmp_path / "plugin.kubeconfig", token=token))))
    plugin.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"v": "2"}}})
    request = _Webhook.reviews[-1][1]["request"]
    assert request["operation"] == "UPDATE" and request["userInfo"] == {
        "username": "system:serviceaccount:tessera-system:tessera-device-plugin",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:tessera-system", "system:authenticated"]}
    assert request["oldObject"]["metadata"]["labels"] == {"v": "1"} and request["object"]["metadata"]["labels"] == {"v": "2"}
    calls = len(_Webhook.reviews)
    stranger = client.CoreV1Api(kubernetes.config.new_client_from_config(
        str(srv.write_kubeconfig(tmp_path / "stranger.kubeconfig", token="made-up"))))
    with pytest.raises(ApiException) as err:
        stranger.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"v": "3"}}})
    assert err.value.status == 401 and json.loads(err.value.body)["reason"] == "Unauthorized"
    assert len(_Webhook.reviews) == calls and core.read_namespaced_pod("p", "default").metadata.labels == {"v": "2"}
