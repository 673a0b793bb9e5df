"""The control plane ``tessera demo`` runs on (``--control-plane``): the embedded one (simcluster, the
default: nothing to build) or the real one (realcluster: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler built from upstream by scripts/build-kube.sh, Tessera installed from deploy/).

Each says what its steps start and starts them: the cluster with its simulated kubelets, Tessera's
scheduling path (the extender and its webhook, with simcluster's scheduler loop on the embedded control
plane, with deploy/'s tessera-scheduler kube-scheduler on the real one), the device plugins, and how a
CPU pod meant for a given node gets there.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from tessera_cli.demo_pods import DemoPod

EMBEDDED = "embedded"
REAL = "real"
CHOICES = (EMBEDDED, REAL)


class ControlPlaneUnavailable(RuntimeError):
    """The control plane asked for cannot run here; the message is one line saying why and what to do."""


class ControlPlane(Protocol):
    """What the demo asks of the control plane it runs on."""

    binds_after_creation: bool   # a pod meant for one node is bound after its creation (else created with nodeName)

    def describe(self, nodes: int) -> str:
        """The demo's first line: what it runs on."""

    def cluster_step(self, nodes: int) -> str:
        """The progress line of the step that starts the cluster and its kubelets."""

    def start_cluster(self, stack: ExitStack, description, args: argparse.Namespace, oci_runtime: str | None):
        """The running cluster (stopped when ``stack`` closes), its nodes' kubelets started."""

    def scheduling_step(self) -> str:
        """The progress line of the step that gives the extender, its webhook and a scheduler calling it."""

    def start_scheduling(self, stack: ExitStack, cluster, note):
        """The scheduling path, as :class:`simcluster.scheduling.Scheduling` (``url``: the extender's
        /metrics and /healthz), once the extender answers /healthz (``note`` hears what is awaited)."""

    def start_plugins(self, stack: ExitStack, cluster):
        """A device plugin per node (:class:`simcluster.plugins.PluginProcesses`), stopped with ``stack``."""

    def pod_body(self, demo_pod: DemoPod) -> dict:
        """The body the demo creates for ``demo_pod``."""

    def keep_notes(self, cluster) -> list[str]:
        """Lines ``--keep`` prints under the kubeconfig."""


@dataclass
class EmbeddedControlPlane:
    """simcluster: its API server and simulated kubelets in this process; the extender and a scheduler loop
    started by the demo."""

    def describe(self, nodes: int) -> str:
        return f"an embedded cluster of {nodes} simulated GPU nodes"

    def cluster_step(self, nodes: int) -> str:
        return f"starting the API server and {nodes} simulated kubelets"

    def start_cluster(self, stack: ExitStack, description, args: argparse.Namespace, oci_runtime: str | None):
        import simcluster

        return stack.enter_context(simcluster.running(description, workdir=args.workdir, oci_runtime=oci_runtime,
                                                      seed=7, keep_workdir_on_error=True))

    def scheduling_step(self) -> str:
        return ("starting tessera-extender (its own process), its admission webhook (TLS) and the scheduler loop; "
                "waiting for it to answer /healthz")

    def start_scheduling(self, stack: ExitStack, cluster, note):
        from simcluster.scheduling import scheduling

        return stack.enter_context(scheduling(cluster, own_process=True, report=note))

    def start_plugins(self, stack: ExitStack, cluster):
        from simcluster.plugins import device_plugins

        return stack.enter_context(device_plugins(cluster))

    # A pod meant for one node is created, then bound to it (no default scheduler runs here).
    binds_after_creation = True

    def pod_body(self, demo_pod: DemoPod) -> dict:
        return demo_pod.body

    def keep_notes(self, cluster) -> list[str]:
        return []   # any kubectl reaches the embedded API server


@dataclass
class RealControlPlane:
    """realcluster: the upstream control plane as processes, Tessera from deploy/ (tessera-extender with its
    webhook, the tessera-scheduler kube-scheduler calling it), the simulated nodes registered as kubelets."""

    binaries: Any   # realcluster.Binaries

    def describe(self, nodes: int) -> str:
        return (f"the real control plane (Kubernetes from {self.binaries.folder}) with {nodes} simulated GPU nodes "
                "as kubelets")

    def cluster_step(self, nodes: int) -> str:
        return (f"starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, Tessera from deploy/ "
                f"(tessera-extender, its webhook, the tessera-scheduler kube-scheduler) and {nodes} kubelets")

    def start_cluster(self, stack: ExitStack, description, args: argparse.Namespace, oci_runtime: str | None):
        import realcluster

        return stack.enter_context(realcluster.running(description, binaries=self.binaries, oci_runtime=oci_runtime,
                                                       seed=7, keep_workdir_on_error=True))

    def scheduling_step(self) -> str:
        return ("tessera-extender (deploy/'s arguments and ServiceAccount) and the tessera-scheduler kube-scheduler "
                "calling it over HTTPS: started with the control plane; checking its /healthz")

    def start_scheduling(self, stack: ExitStack, cluster, note):
        from simcluster.readiness import http_ok, wait_ready
        from simcluster.scheduling import Scheduling

        tessera = cluster.tessera
        # Its /metrics and /healthz listen on plain HTTP, as the extender's address does on the embedded plane.
        sched = Scheduling(tessera.extender.proc, None, tessera.metrics_url, tessera.extender.log_path)
        wait_ready([sched.awaited(lambda: http_ok(f"{sched.url}/healthz"))], "answering /healthz (leader, synced)",
                   report=note)
        return sched

    def start_plugins(self, stack: ExitStack, cluster):
        from simcluster.plugins import device_plugins

        return stack.enter_context(device_plugins(
            cluster, extender_public_key=str(cluster.tessera.signing_public_key)))

    # A pod meant for one node is created with its nodeName: the default kube-scheduler would race a Binding.
    binds_after_creation = False

    def pod_body(self, demo_pod: DemoPod) -> dict:
        if not demo_pod.node:
            return demo_pod.body
        return {**demo_pod.body, "spec": {**demo_pod.body["spec"], "nodeName": demo_pod.node}}

    def keep_notes(self, cluster) -> list[str]:
        """The kubectl of the same release, and where the control plane's and Tessera's logs are."""
        from realcluster.binaries import KUBE_VERSION

        return [f"# kubectl {self.binaries['kubectl']} (Kubernetes {KUBE_VERSION}, as the control plane)",
                f"# logs of the control plane and Tessera: {cluster.workdir / 'logs'}"]


def choose(args: argparse.Namespace) -> ControlPlane:
    """The control plane ``args`` asks for; :class:`ControlPlaneUnavailable` where it cannot run here."""
    if getattr(args, "control_plane", EMBEDDED) != REAL:
        return EmbeddedControlPlane()
    if args.workdir:
        raise ControlPlaneUnavailable("--workdir is for the embedded control plane; the real one works in a "
                                      "folder of its own under /tmp (its path is printed with --keep)")
    import realcluster

    try:
        return RealControlPlane(realcluster.find_binaries())
    except realcluster.BinariesMissing as exc:
        raise ControlPlaneUnavailable(f"--control-plane real: {exc}") from None
