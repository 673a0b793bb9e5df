"""ResourceQuota on the embedded API server: the README's per-tenant example works as written, a pod
over quota is refused with the real message, and status.used follows what the pods hold."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from apiserver_helpers import kubectl, pod
from simcluster.apiserver.errors import ApiError

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "deploy" / "examples"


def _gpu_pod(name: str, limits: dict[str, str], namespace: str = "team-a") -> dict:
    body = pod(name, namespace)
    body["spec"]["containers"][0]["resources"] = {"limits": limits}
    return body


def _used(server, name: str = "tessera-gpus", namespace: str = "team-a") -> dict[str, str]:
    return server.registry.get("resourcequotas", name, namespace)["status"]["used"]


def _refusal(server, body: dict, dry_run: bool = False) -> ApiError:
    with pytest.raises(ApiError) as err:
        server.registry.create("pods", body, dry_run=dry_run)
    return err.value


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine")
def test_the_readme_quota_example_refuses_the_pod_over_quota(server, tmp_path):
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return kubectl(server, tmp_path, *args, stdin=stdin)

    assert run("create", "namespace", "team-a").returncode == 0
    # The command the example carries, run as written from the repository root.
    example = (EXAMPLES / "resourcequota.yaml").read_text()
    command = next(line.lstrip("# ") for line in example.splitlines() if line.startswith("# kubectl "))
    assert command == "kubectl -n team-a apply -f deploy/examples/resourcequota.yaml"
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    applied = subprocess.run([*shlex.split(command), "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "c")],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    assert set(_used(server).values()) == {"0"}

    two = yaml.safe_load((EXAMPLES / "pod-gpu-two.yaml").read_text())
    for i in (1, 2):
        two["metadata"]["name"] = f"gpu-two-{i}"
        assert run("create", "-f", "-", stdin=json.dumps(two)).returncode == 0
    two["metadata"]["name"] = "gpu-two-3"
    out = run("create", "-f", "-", stdin=json.dumps(two))
    assert out.returncode == 1
    assert ('Error from server (Forbidden): error when creating "STDIN": pods "gpu-two-3" is forbidden: '
            "exceeded quota: tessera-gpus, requested: requests.nvidia.com/gpu=2, used: requests.nvidia.com/gpu=4, "
            "limited: requests.nvidia.com/gpu=4") in out.stderr
    assert _used(server)["requests.nvidia.com/gpu"] == "4"

    assert run("apply", "-f", str(EXAMPLES / "pod-mps.yaml")).returncode == 0
    shown = json.loads(run("-n", "team-a", "get", "resourcequota", "tessera-gpus", "-o", "json").stdout)
    assert shown["status"]["used"] == {
        "requests.nvidia.com/gpu": "4", "requests.nvidia.com/gpu.shared": "0", "requests.nvidia.com/mig-1g.10gb": "0",
        "requests.nvidia.com/mig-3g.40gb": "0", "requests.nvidia.com/mps-core": "50", "requests.nvidia.com/mps-memory": "8"}
    assert shown["status"]["hard"] == shown["spec"]["hard"]

    # A deleted pod gives its GPUs back, and the refused pod fits.
    assert run("-n", "team-a", "delete", "pod", "gpu-two-1").returncode == 0
    assert _used(server)["requests.nvidia.com/gpu"] == "2"
    assert run("create", "-f", "-", stdin=json.dumps(two)).returncode == 0
    table = run("-n", "team-a", "get", "quota").stdout
    assert "requests.nvidia.com/gpu: 4/4" in table and "requests.nvidia.com/mps-core: 50/400" in table


def _quota(server, hard: dict[str, str], name: str = "tessera-gpus", namespace: str = "team-a") -> dict:
    if namespace not in {n["metadata"]["name"] for n in server.registry.list("namespaces")}:
        server.registry.create("namespaces", {"metadata": {"name": namespace}})
    return server.registry.create("resourcequotas", {"metadata": {"name": name}, "spec": {"hard": hard}},
                                  namespace=namespace)


def test_creates_racing_for_the_last_gpu_admit_exactly_one(server):
    _quota(server, {"requests.nvidia.com/gpu": "1"})
    results: list[object] = []
    start = threading.Barrier(8)

    def create(i: int) -> None:
        start.wait()
        try:
            results.append(server.registry.create("pods", _gpu_pod(f"racer-{i}", {"nvidia.com/gpu": "1"})))
        except ApiError as exc:
            results.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    refused = [r for r in results if isinstance(r, ApiError)]
    assert len(results) == 8 and len(refused) == 7
    assert all(r.code == 403 and "exceeded quota: tessera-gpus" in r.message for r in refused)
    assert _used(server) == {"requests.nvidia.com/gpu": "1"}


def test_ended_and_deleted_pods_give_their_share_back(server):
    _quota(server, {"requests.nvidia.com/mps-core": "100", "count/pods": "10", "pods": "10"})
    server.registry.create("pods", _gpu_pod("job", {"nvidia.com/mps-core": "60"}))
    assert _used(server) == {"requests.nvidia.com/mps-core": "60", "count/pods": "1", "pods": "1"}
    refusal = _refusal(server, _gpu_pod("more", {"nvidia.com/mps-core": "50"}), dry_run=True)
    assert refusal.message == ('pods "more" is forbidden: exceeded quota: tessera-gpus, requested: '
                               "requests.nvidia.com/mps-core=50, used: requests.nvidia.com/mps-core=60, "
                               "limited: requests.nvidia.com/mps-core=100")
    server.registry.patch("pods", "job", {"status": {"phase": "Failed"}}, "application/merge-patch+json",
                          namespace="team-a", subresource="status")
    # An ended pod holds no GPU share and no "pods" slot, but is still an object (count/pods).
    assert _used(server) == {"requests.nvidia.com/mps-core": "0", "count/pods": "1", "pods": "0"}
    server.registry.create("pods", _gpu_pod("more", {"nvidia.com/mps-core": "50"}))
    server.registry.delete("pods", "job", "team-a")
    assert _used(server) == {"requests.nvidia.com/mps-core": "50", "count/pods": "1", "pods": "1"}


def test_a_quota_on_cpu_makes_every_container_name_its_cpu(server):
    _quota(server, {"requests.cpu": "2", "requests.nvidia.com/gpu": "4"}, name="compute")
    refusal = _refusal(server, _gpu_pod("bare", {"nvidia.com/gpu": "1"}))
    assert refusal.code == 403
    assert refusal.message == 'pods "bare" is forbidden: failed quota: compute: must specify requests.cpu for: main'
    server.registry.create("pods", _gpu_pod("sized", {"nvidia.com/gpu": "1", "cpu": "500m"}))
    assert _used(server, "compute") == {"requests.cpu": "500m", "requests.nvidia.com/gpu": "1"}


def test_quotas_and_pods_with_bad_values_are_refused_as_the_real_server_does(server):
    server.registry.create("namespaces", {"metadata": {"name": "team-a"}})
    for hard, code, text in (
        ({"gpu": "1"}, 422, 'spec.hard[gpu]: Invalid value: "gpu": must be a standard resource for quota'),
        ({"requests.nvidia.com/gpu": "-1"}, 422, "must be greater than or equal to 0"),
        ({"requests.nvidia.com/gpu": "lots"}, 400, "quantities must match the regular expression"),
    ):
        with pytest.raises(ApiError) as err:
            _quota(server, hard)
        assert err.value.code == code and text in err.value.message
    refusal = _refusal(server, _gpu_pod("typo", {"nvidia.com/gpu": "one"}))
    assert refusal.code == 400 and "quantities must match the regular expression" in refusal.message
    # Extended resources are quota'd by request only: without the prefix a quota counts nothing.
    _quota(server, {"nvidia.com/gpu": "1"}, name="unprefixed")
    for i in (1, 2):
        server.registry.create("pods", _gpu_pod(f"free-{i}", {"nvidia.com/gpu": "1"}))
    assert _used(server, "unprefixed") == {"nvidia.com/gpu": "0"}
