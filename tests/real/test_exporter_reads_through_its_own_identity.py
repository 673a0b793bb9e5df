"""The exporter of each node runs with deploy/'s ServiceAccount tessera-exporter, so the real
authorizer decides what it reads: it reads its Node's inventory (the GPU's mode and grants in its
metrics) and attributes a whole GPU to the pod that holds it, from the kubelet's pod-resources API."""

from __future__ import annotations

import urllib.request

import pytest

from realtier import pod, wait_for, wait_running
from simcluster.exporters import start_exporters, stop_exporters
from tessera import NAMESPACE


@pytest.fixture(scope="module")
def exporters(real_cluster):
    started = start_exporters(real_cluster, interval_s=0.5,
                              kubeconfig=real_cluster.service_account_kubeconfig(NAMESPACE, "tessera-exporter"))
    yield started
    stop_exporters(started)


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_metrics_carry_the_nodes_inventory_and_the_pod_holding_a_gpu(real_cluster, namespace, exporters):
    real_cluster.apply([pod("holder", {"nvidia.com/gpu": 1}, namespace=namespace)])
    running = wait_running(real_cluster.core_v1(), namespace, "holder")
    exporter = exporters[running["spec"]["nodeName"]]
    text = wait_for(lambda: (t := scrape(exporter.url)) and f'namespace="{namespace}"' in t and t,
                    "the exporter attributing a GPU to pod holder")
    held = [line for line in text.splitlines()
            if line.startswith("DCGM_FI_DEV_GPU_UTIL{") and 'pod="holder"' in line and f'namespace="{namespace}"' in line]
    assert len(held) == 1, held
    # It read its Node's inventory (mode and health come from there) with its own token, never refused.
    errors = [line for line in text.splitlines() if line.startswith("tessera_exporter_inventory_errors")]
    assert errors and all(float(line.split()[-1]) == 0 for line in errors), errors
    log = exporter.log.read_text()
    assert "node_inventory_read_failed" not in log and "Forbidden" not in log
