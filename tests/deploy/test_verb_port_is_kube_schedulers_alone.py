"""deploy/ gives the extender's verb port to kube-scheduler alone: the extender asks for a client
certificate (--client-ca-path), kube-scheduler's extender tlsConfig presents one from the Secret it
mounts, and the two Secrets make-keys.sh fills fit together, which is checked by running the extender
on those files and calling it as kube-scheduler would and as anyone else would. A NetworkPolicy lets
only kube-scheduler's pods reach the verb port, and opens the webhook and metrics ports."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from manifests import find, flag, pod_templates, scheduler_configuration

from simcluster.extenders import start_extender
from simcluster.apiserver import ApiServer
from simcluster.cluster import NodeSpec
from simcluster.lightnodes import light_node_object


def extender_container(objects: list[dict]) -> dict:
    return [c for c in pod_templates(objects)["tessera-extender"]["containers"] if c["name"] == "extender"][0]


def mounted_secret_file(objects: list[dict], workload: str, container: dict, path: str) -> tuple[str, str]:
    """(Secret name, key) of the file at ``path`` in ``container`` of ``workload``."""
    volumes = {v["name"]: v for v in pod_templates(objects)[workload].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if os.path.dirname(path) == mount["mountPath"].rstrip("/"):
            secret = volumes[mount["name"]].get("secret")
            assert secret, f"{path} is mounted from {volumes[mount['name']]}, not a Secret"
            return secret["secretName"], os.path.basename(path)
    raise AssertionError(f"{workload}: nothing mounted at {path}")


def secret_file(objects: list[dict], name: str, key: str, folder: Path) -> Path:
    """The Secret's key written to a file, as the kubelet would mount it."""
    secret = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == name][0]
    assert key in secret["data"], f"Secret {name} has no {key}"
    path = folder / f"{name}-{key}"
    path.write_bytes(base64.b64decode(secret["data"][key]))
    return path


def test_kube_scheduler_presents_a_certificate_the_extender_asks_for(rendered, tmp_path):
    objects = rendered["default"]
    config, dra = scheduler_configuration(objects)["extenders"]
    assert (dra["urlPrefix"], dra["tlsConfig"], dra["enableHTTPS"]) == \
        (config["urlPrefix"], config["tlsConfig"], config["enableHTTPS"]), "both entries reach one verb port"
    url = urlsplit(config["urlPrefix"])
    assert url.scheme == "https" and config["enableHTTPS"] is True
    extender = extender_container(objects)
    assert flag(extender["args"], "listen") == f"0.0.0.0:{url.port}"
    scheduler = [c for c in pod_templates(objects)["tessera-scheduler"]["containers"]][0]
    files = {}
    for key in ("certFile", "keyFile", "caFile"):
        name, item = mounted_secret_file(objects, "tessera-scheduler", scheduler, config["tlsConfig"][key])
        files[key] = secret_file(objects, name, item, tmp_path)
    for key in ("client-ca-path", "tls-cert-path", "tls-key-path"):
        name, item = mounted_secret_file(objects, "tessera-extender", extender, flag(extender["args"], key))
        files[key] = secret_file(objects, name, item, tmp_path)

    # The extender on exactly those files; kube-scheduler's side with exactly its files.
    with ApiServer() as srv:
        srv.registry.create("nodes", light_node_object(NodeSpec("gpu-0", "T4", 1, mode="mps")))
        ext = start_extender(srv.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path, leader_election=False,
                             listen="127.0.0.1:0", client_ca_path=str(files["client-ca-path"]),
                             tls_cert_path=str(files["tls-cert-path"]), tls_key_path=str(files["tls-key-path"]))
        try:
            def filter_as(ctx: ssl.SSLContext) -> dict:
                host, port = ext.http.address
                sock = ctx.wrap_socket(socket.create_connection((host, port), timeout=60),
                                       server_hostname=url.hostname)  # the name in urlPrefix
                conn = http.client.HTTPSConnection(url.hostname, port, timeout=60, context=ctx)
                conn.sock = sock
                pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
                       "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
                conn.request("POST", f"{url.path.rstrip('/')}/{config['filterVerb']}",
                             json.dumps({"Pod": pod, "NodeNames": ["gpu-0"]}).encode())
                return json.loads(conn.getresponse().read())

            kube_scheduler = ssl.create_default_context(cafile=str(files["caFile"]))
            kube_scheduler.load_cert_chain(str(files["certFile"]), str(files["keyFile"]))
            assert "NodeNames" in filter_as(kube_scheduler)
            anyone = ssl.create_default_context(cafile=str(files["caFile"]))
            with pytest.raises((ssl.SSLError, ConnectionError)):
                filter_as(anyone)
        finally:
            ext.stop()


def test_only_kube_schedulers_pods_reach_the_verb_port(rendered):
    objects = rendered["default"]
    policy = find(objects, "NetworkPolicy", "tessera-extender")["spec"]
    labels = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tessera-extender"][0]
    assert policy["podSelector"]["matchLabels"].items() <= labels["spec"]["template"]["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    ports = {p["name"]: p["containerPort"] for p in extender_container(objects)["ports"]}
    scheduler = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tessera-scheduler"][0]
    scheduler_labels = scheduler["spec"]["template"]["metadata"]["labels"]
    opened: dict[str, list] = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            name = port["port"] if isinstance(port["port"], str) else {v: k for k, v in ports.items()}[port["port"]]
            opened.setdefault(name, []).append(rule.get("from"))
    assert set(opened) == {"verbs", "webhook", "metrics"}
    for sources in opened["verbs"]:
        assert sources, "the verb port is open to every source"
        for source in sources:
            assert set(source) == {"podSelector"}, f"the verb port is open to {source}"
            assert source["podSelector"]["matchLabels"].items() <= scheduler_labels.items()


def test_the_production_overlays_certificates_come_from_one_ca(rendered):
    objects = rendered["production"]
    serving = find(objects, "Certificate", "tessera-webhook")["spec"]
    client = find(objects, "Certificate", "tessera-scheduler-client")["spec"]
    assert serving["issuerRef"] == client["issuerRef"]
    issuer = find(objects, "Issuer", client["issuerRef"]["name"])["spec"]
    assert find(objects, "Certificate", issuer["ca"]["secretName"])["spec"]["isCA"] is True
    assert "client auth" in client["usages"] and "server auth" in serving["usages"]
    volumes = {v["name"]: v for v in pod_templates(objects)["tessera-scheduler"]["volumes"]}
    assert client["secretName"] in {v.get("secret", {}).get("secretName") for v in volumes.values()}
