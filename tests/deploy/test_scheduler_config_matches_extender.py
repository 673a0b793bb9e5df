"""The KubeSchedulerConfiguration in deploy/ fits the real extender: its verbs are the extender's
routes (POSTed with kube-scheduler's JSON, each answers JSON, never 404), its managed resources are
every resource name the extender handles, and its profile is the schedulerName the webhook sets."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from manifests import containers, flag, scheduler_configuration

from simcluster.extenders import start_extender
from tessera.podrequest import pod_request
from simcluster.apiserver import ApiServer
from simcluster.cluster import NodeSpec
from simcluster.lightnodes import light_node_object
from tessera import (RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY,
                     mig_resource_name)
from tessera.config import ExtenderConfig
from tessera.fakenvml.catalog import CATALOG

NODES = [NodeSpec(name="gpu-0", model="T4", gpus=2, mode="mps"), NodeSpec(name="gpu-1", model="T4", gpus=2, mode="mps")]


def tessera_resource_names() -> set[str]:
    """What Tessera advertises: the fixed names and one per MIG profile of every model it knows."""
    migs = {mig_resource_name(p.name) for model in CATALOG.values() for p in model.mig_profiles}
    return {RESOURCE_GPU, RESOURCE_GPU_SHARED, RESOURCE_MPS_CORE, RESOURCE_MPS_MEMORY} | migs


def pod(name: str, limits: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"schedulerName": "tessera-scheduler", "containers": [
                {"name": "main", "image": "cuda", "resources": {"limits": limits, "requests": limits}}]}}


@pytest.fixture(scope="module")
def extender(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("extender")
    with ApiServer() as srv:
        for spec in NODES:
            srv.registry.create("nodes", light_node_object(spec))
        daemon = start_extender(srv.write_kubeconfig(workdir / "kubeconfig"), workdir, leader_election=False)
        try:
            yield srv, daemon
        finally:
            daemon.stop()


def post(base: str, verb: str, body: dict) -> tuple[int, object]:
    """POST to urlPrefix + "/" + verb as kube-scheduler's HTTPExtender does; status and decoded JSON."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", f"{parts.path.rstrip('/')}/{verb}", json.dumps(body).encode(),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, json.loads(raw)


def test_every_verb_is_an_extender_route(rendered, extender):
    srv, daemon = extender
    config, dra = scheduler_configuration(rendered["default"])["extenders"]
    configured = urlsplit(config["urlPrefix"])
    assert configured.scheme == ("https" if config["enableHTTPS"] else "http")
    extender_args = [c for _, c in containers(rendered["default"]) if c["name"] == "extender"][0]["args"]
    assert configured.port == int(flag(extender_args, "listen").rpartition(":")[2])
    base = f"{daemon.url}{configured.path}"  # the configured path, on the extender that runs here
    created = srv.registry.create("pods", pod("p", {"nvidia.com/mps-core": "50", "nvidia.com/mps-memory": "4"}),
                                  namespace="default")
    names = [n.name for n in NODES]
    status, answer = post(base, config["filterVerb"], {"Pod": created, "NodeNames": names})
    assert status == 200 and sorted(answer["NodeNames"]) == names and not answer.get("Error"), answer
    status, answer = post(base, config["prioritizeVerb"], {"Pod": created, "NodeNames": names})
    assert status == 200 and {h["Host"] for h in answer} == set(names), answer
    status, answer = post(base, config["preemptVerb"], {"Pod": created, "NodeNameToMetaVictims": {
        "gpu-0": {"Pods": [], "NumPDBViolations": 0}}})
    assert status == 200 and "NodeNameToMetaVictims" in answer, answer
    meta = created["metadata"]
    status, answer = post(base, config["bindVerb"], {"PodName": meta["name"], "PodNamespace": meta["namespace"],
                                                     "PodUID": meta["uid"], "Node": "gpu-0"})
    assert status == 200 and not answer.get("Error"), answer
    assert srv.registry.get("pods", "p", "default")["spec"]["nodeName"] == "gpu-0"
    assert config["nodeCacheCapable"] is True and config["ignorable"] is False
    # The DRA entry: the same port, prioritize only, asked for every pod of the profile (no managed
    # resources); a pod the first entry scores gets nothing from it (an empty list), so it is not scored twice.
    assert set(dra) & {"filterVerb", "bindVerb", "preemptVerb", "managedResources"} == set()
    assert dra["urlPrefix"] == config["urlPrefix"] and dra["nodeCacheCapable"] is True and dra["ignorable"] is True
    status, answer = post(base, dra["prioritizeVerb"], {"Pod": created, "NodeNames": names})
    assert status == 200 and answer == [], answer


def test_managed_resources_are_the_names_the_extender_handles(rendered):
    config = scheduler_configuration(rendered["default"])["extenders"][0]
    managed = {m["name"] for m in config["managedResources"]}
    assert managed == tessera_resource_names()
    assert all(m["ignoredByScheduler"] is False for m in config["managedResources"]), \
        "kube-scheduler must still check node totals"
    for name in managed - {RESOURCE_MPS_MEMORY}:  # mps-memory only rides along with mps-core
        limits = {name: "1"} if name != RESOURCE_MPS_CORE else {name: "10", RESOURCE_MPS_MEMORY: "1"}
        assert any(c.ask for c in pod_request(pod("x", limits)).containers), f"the extender does not read {name}"


def test_profile_is_the_scheduler_name_the_webhook_sets(rendered):
    config = scheduler_configuration(rendered["default"])
    extender_args = [c for _, c in containers(rendered["default"]) if c["name"] == "extender"][0]["args"]
    default = ExtenderConfig().scheduler_name
    assert [p["schedulerName"] for p in config["profiles"]] == [default]
    assert flag(extender_args, "scheduler-name") == default
    election = config["leaderElection"]
    assert election["resourceName"] == "tessera-scheduler" and election["resourceLock"] == "leases"
