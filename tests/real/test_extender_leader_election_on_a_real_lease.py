"""Two tessera-extender replicas, as deploy/'s Deployment runs them (two replicas, Lease leader
election), on a real Lease of their own cluster: one leads and answers /healthz, the other waits; when
the leader is killed (no chance to release), the other takes the Lease once it expires and serves."""

from __future__ import annotations

import json
import signal

import pytest

from realcluster.install import start_extender_replica
from realtier import binaries_or_skip, wait_for
from simcluster.readiness import http_ok
from tessera import NAMESPACE

LEASE_S = 4.0   # --lease-duration-s: short, so that the failover is quick to see


def lease(cluster) -> dict:
    return json.loads(cluster.kubectl("-n", NAMESPACE, "get", "lease", "tessera-extender", "-o", "json").stdout)["spec"]


@pytest.fixture(scope="module")
def bare_cluster():
    """A real cluster of its own with deploy/ applied and no nodes: this test kills its extenders."""
    import realcluster
    with realcluster.running(binaries=binaries_or_skip(), kubelets=False) as cluster:
        cluster.tessera.extender.stop()   # the one started with the cluster; this test starts two
        yield cluster


def test_one_replica_leads_and_the_other_takes_over_when_it_dies(bare_cluster):
    cluster, tessera = bare_cluster, bare_cluster.tessera
    logs = cluster.workdir / "logs"
    first = start_extender_replica(cluster, tessera.objects, tessera.webhook_ca, "replica-a", logs,
                                   lease_duration_s=LEASE_S)
    wait_for(first.healthy, "replica-a leading (/healthz 200)")
    second = start_extender_replica(cluster, tessera.objects, tessera.webhook_ca, "replica-b", logs,
                                    lease_duration_s=LEASE_S)
    wait_for(lambda: http_ok(f"{second.metrics_url}/metrics"), "replica-b up (/metrics)")
    assert not second.healthy()                         # a follower is not ready: the Service skips it
    holder = lease(cluster)["holderIdentity"]
    transitions = lease(cluster).get("leaseTransitions", 0)

    first.component.proc.send_signal(signal.SIGKILL)   # no release: the Lease must expire
    first.component.proc.wait(timeout=30)
    wait_for(second.healthy, "replica-b leading after replica-a died")
    after = lease(cluster)
    assert after["holderIdentity"] != holder
    assert after.get("leaseTransitions", 0) == transitions + 1
