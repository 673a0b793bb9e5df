"""deploy/uninstall: the DaemonSet that takes Tessera off each GPU node after uninstall. It runs where the
device plugin ran, undoes what the install-hook init container wrote (through the real parsers of the
commands it runs), and its RBAC is exactly what removing the node labels calls (run against the
embedded API server with its ServiceAccount's token, every request recorded)."""

from __future__ import annotations

import json
import subprocess

import kubernetes_validate
import pytest
import yaml

from manifests import REPO_ROOT, containers, kubectl, pod_templates
from rbac import attributes, grants

from deviceplugin.main import build_parser as device_plugin_parser
from deviceplugin.main import main as device_plugin_main
from hook.main import build_parser as hook_parser
from hook.main import settings_from_args
from simcluster.apiserver import ApiServer
from simcluster.apiserver.authn import service_account_user
from simcluster.apiserver.recording import RequestRecorder

NAMESPACE, ACCOUNT = "tessera-cleanup", "tessera-node-cleanup"


@pytest.fixture(scope="module")
def cleanup() -> list[dict]:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: deploy/uninstall cannot be rendered with kubectl kustomize")
    done = subprocess.run([kubectl(), "kustomize", str(REPO_ROOT / "deploy" / "uninstall")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_name(objects: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for _, c in containers(objects)}


def test_it_renders_valid_objects_and_runs_on_the_device_plugin_s_nodes(cleanup, rendered):
    for obj in cleanup:
        kubernetes_validate.validate(obj, "1.32.0", strict=True)
    pod, plugin = pod_templates(cleanup)["tessera-node-cleanup"], pod_templates(rendered["default"])["tessera-device-plugin"]
    assert pod["affinity"] == plugin["affinity"] and pod["tolerations"] == plugin["tolerations"]
    image = {c["image"] for c in by_name(cleanup).values()}
    assert image == {by_name(rendered["default"])["install-hook"]["image"]}, "the image the install ran"


def test_the_hook_is_uninstalled_from_what_install_wrote(cleanup, rendered):
    install, uninstall = by_name(rendered["default"])["install-hook"], by_name(cleanup)["uninstall-hook"]
    args = uninstall["command"][1:] + uninstall["args"]
    parsed = hook_parser().parse_args(args)
    assert parsed.stage == "uninstall" and parsed.root == "/host"
    installed_runtime = [a for a in install["args"] if a.startswith("--runtime=")]
    assert settings_from_args(parsed).runtime == installed_runtime[0].split("=", 1)[1]
    # every host folder install wrote into is mounted at the same place, but the hook's releases: they
    # must outlive containerd's restart (a container start would fail on a hook that is gone)
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod_templates(cleanup)["tessera-node-cleanup"]["volumes"]}
    plugin_volumes = {v["name"]: v.get("hostPath", {}).get("path")
                      for v in pod_templates(rendered["default"])["tessera-device-plugin"]["volumes"]}
    wrote = {(m["mountPath"], plugin_volumes[m["name"]]) for m in install["volumeMounts"]}
    undone = {(m["mountPath"], volumes[m["name"]]) for m in uninstall["volumeMounts"]}
    assert undone == wrote - {("/host/opt/tessera", "/opt/tessera")}
    assert uninstall["securityContext"] == install["securityContext"]


def test_remove_labels_calls_exactly_what_its_rbac_grants(cleanup, tmp_path):
    remover = by_name(cleanup)["remove-labels"]
    assert device_plugin_parser().parse_args(remover["command"][1:]).remove_labels
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in remover["env"]} == {"NODE_NAME": "spec.nodeName"}
    with ApiServer(host="127.0.0.1", port=0) as server:
        server.authenticator.add_token(ACCOUNT, service_account_user(NAMESPACE, ACCOUNT))
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        doc = yaml.safe_load(kubeconfig.read_text())
        doc["users"][0]["user"] = {"token": ACCOUNT}
        kubeconfig.write_text(yaml.safe_dump(doc))
        owned = {"nvidia.com/gpu.count": "4", "tessera.io/gpu-mode": "exclusive"}
        server.registry.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": "gpu-7", "labels": {**owned, "team": "ml"},
            "annotations": {"tessera.io/owned-labels": json.dumps(owned)}}})
        recorder = RequestRecorder()
        server.recorder = recorder
        assert device_plugin_main([*remover["command"][1:], f"--kubeconfig={kubeconfig}", "--node-name=gpu-7"]) == 0
        server.recorder = None
        assert server.registry.get("nodes", "gpu-7")["metadata"]["labels"] == {"team": "ml"}
    granted = grants(cleanup, ACCOUNT, NAMESPACE)
    calls = [a for a in map(attributes, recorder.requests(ACCOUNT)) if a is not None]
    assert calls and all(any(g.allows(a) for g in granted) for a in calls), [str(a) for a in calls]
    assert all(any(g.allows(a) for a in calls) for g in granted), "every verb granted is used"
