"""``with simcluster.running(...) as cluster:`` is how a test or a user opens the embedded cluster, and
``simcluster`` names its public faces without loading the kubelets for those who need only a part."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import urllib3

import simcluster


def test_running_opens_the_cluster_and_stops_it_on_exit():
    description = simcluster.load_cluster()
    with simcluster.running(description, light=True) as cluster:
        assert isinstance(cluster, simcluster.Cluster)
        nodes = json.loads(cluster.core_v1().list_node(_preload_content=False).data)["items"]
        assert sorted(n["metadata"]["name"] for n in nodes) == sorted(n.name for n in description.nodes)
        url = cluster.url
    with pytest.raises(urllib3.exceptions.HTTPError):
        urllib3.PoolManager(retries=False).request("GET", f"{url}/api/v1/nodes", timeout=10)


def test_every_public_name_is_there():
    assert all(getattr(simcluster, name) is not None for name in simcluster.__all__)
    assert {"running", "Cluster", "poll_until", "load_cluster"} <= set(simcluster.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        simcluster.nothing  # noqa: B018


def test_a_part_of_simcluster_loads_without_the_kubelets():
    code = "import sys, simcluster.apiserver; print('simcluster.kubelet' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
