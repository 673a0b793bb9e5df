"""Every object deploy/ renders (both overlays, workloads included) is accepted by the real API
server's own validation, as ``kubectl apply --server-side`` sends it (a dry run: the workloads'
images cannot run here)."""

from __future__ import annotations

import pytest
import yaml

from realcluster.install import render_deploy

CRD_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule", "Certificate", "Issuer", "ClusterIssuer"}


@pytest.mark.parametrize("overlay", [".", "overlays/production"])
def test_every_deploy_object_passes_server_side_dry_run(real_cluster, overlay, tmp_path):
    objects = render_deploy(tmp_path, real_cluster.binaries["kubectl"], overlay)
    # Custom resources of cert-manager and the Prometheus Operator need their CRDs, which this cluster lacks.
    core = [o for o in objects if o["kind"] not in CRD_KINDS]
    assert len(core) > 20
    for o in core:
        if o["kind"] == "MutatingWebhookConfiguration":
            # The running cluster has this one with a `url` (set up for the test): a second name keeps
            # server-side apply from merging deploy/'s `service` into it.
            o["metadata"]["name"] += "-schema-check"
    namespaces = [o for o in core if o["kind"] == "Namespace"]
    real_cluster.apply(namespaces)
    done = real_cluster.kubectl("apply", "--server-side", "--dry-run=server", "--force-conflicts",
                                "--field-manager=deploy-check", "-f", "-",
                                input=yaml.safe_dump_all([o for o in core if o["kind"] != "Namespace"]), check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("serverside-applied (server dry run)") == len(core) - len(namespaces), done.stdout
