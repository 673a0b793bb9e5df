"""The chart as an admin lives with it, against the real control plane: ``helm install`` with the keys
make-keys.sh wrote (every object accepted by the real API server), ``helm upgrade`` with a changed
placement policy and scheduler tag (the Deployments carry the new values), ``helm rollback`` to the
first revision (the old values are back), ``helm history`` showing the three revisions, and
``helm uninstall`` removing the objects.

Its own cluster without Tessera and without kubelets: nothing here runs a pod; no real node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from realcluster.helmchart import CHART, HOW_TO_GET, find_helm, key_args, run_helm
from realcluster.install import DEPLOY
from realtier import binaries_or_skip
from tessera.daemonproc import REPO_ROOT

RELEASE = "tessera"
NAMESPACE = "tessera-system"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """make-keys.sh's files, in a folder of the test's."""
    folder = tmp_path_factory.mktemp("keys")
    env = {**os.environ, "PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    done = subprocess.run(["sh", str(DEPLOY / "make-keys.sh"), str(folder)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return folder


def test_install_upgrade_rollback_and_uninstall(keys, tmp_path):
    import realcluster

    helm = find_helm()
    if helm is None:
        pytest.skip(f"helm is not built: {HOW_TO_GET}")
    with realcluster.running(binaries=binaries_or_skip(), tessera=False, kubelets=False) as cluster:
        def run(*args: str) -> str:
            done = run_helm(helm, [*args, f"--kubeconfig={cluster.kubeconfig}", "--namespace=default"], tmp_path)
            assert done.returncode == 0, f"helm {args[0]}: {done.stderr}"
            return done.stdout

        def deployment(name: str) -> dict:
            done = cluster.kubectl("get", "deployment", name, "-n", NAMESPACE, "-o", "json")
            return json.loads(done.stdout)["spec"]["template"]["spec"]["containers"][0]

        def state() -> tuple[str, str]:
            policy = [a for a in deployment("tessera-extender")["args"] if a.startswith("--policy=")]
            return policy[0], deployment("tessera-scheduler")["image"]

        run("install", RELEASE, str(CHART), *key_args(keys))
        assert state() == ("--policy=fragmentation", "registry.k8s.io/kube-scheduler:v1.37.2")
        listed = cluster.kubectl("get", "daemonsets,deployments,secrets,configmaps", "-n", NAMESPACE,
                                 "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name").stdout.split()
        assert {"daemonset.apps/tessera-device-plugin", "daemonset.apps/tessera-exporter",
                "daemonset.apps/tessera-dra-plugin", "deployment.apps/tessera-extender",
                "deployment.apps/tessera-scheduler", "secret/tessera-extender-signing-key",
                "secret/tessera-webhook-tls"} <= set(listed)
        webhook = json.loads(cluster.kubectl("get", "mutatingwebhookconfiguration", "tessera", "-o", "json").stdout)
        assert all(hook["clientConfig"]["caBundle"] for hook in webhook["webhooks"])
        assert cluster.kubectl("get", "deviceclass", "mps.gpu.tessera.io").returncode == 0

        def node_config() -> dict[str, str]:
            done = cluster.kubectl("get", "configmap", "tessera-node-config", "-n", NAMESPACE, "-o", "json")
            return json.loads(done.stdout)["data"]

        def plugin_generation() -> int:
            done = cluster.kubectl("get", "daemonset", "tessera-device-plugin", "-n", NAMESPACE, "-o", "json")
            return json.loads(done.stdout)["metadata"]["generation"]

        generation = plugin_generation()
        run("upgrade", RELEASE, str(CHART), *key_args(keys), "--set", "extender.policy=binpack",
            "--set", "scheduler.image.tag=v1.36.4", "--set", "nodeConfig.deviceplugin.timeslice_replicas=8",
            "--set", "nodeConfigs.a100-mig.deviceplugin.default_mode=mig")
        assert state() == ("--policy=binpack", "registry.k8s.io/kube-scheduler:v1.36.4")
        # the node config changed in place, with a per-node key beside it: the device plugins follow the
        # mounted file, so their DaemonSet is not rolled
        assert "timeslice_replicas: 8" in node_config()["config.yaml"]
        assert node_config()["a100-mig.yaml"].split() == ["deviceplugin:", "default_mode:", "mig"]
        assert plugin_generation() == generation

        run("rollback", RELEASE, "1")
        assert state() == ("--policy=fragmentation", "registry.k8s.io/kube-scheduler:v1.37.2")
        assert sorted(node_config()) == ["config.yaml"] and "timeslice_replicas: 4" in node_config()["config.yaml"]
        history = json.loads(run("history", RELEASE, "--output=json"))
        assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"),
                                                                  (3, "deployed")]
        assert "Rollback to 1" in history[-1]["description"]

        run("uninstall", RELEASE, "--wait", "--timeout=60s")
        done = cluster.kubectl("get", "deployment", "tessera-extender", "-n", NAMESPACE, check=False)
        assert done.returncode != 0
        assert cluster.kubectl("get", "mutatingwebhookconfiguration", "tessera", check=False).returncode != 0
