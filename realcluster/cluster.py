"""``realcluster.running()``: the real control plane, Tessera installed as deploy/ installs it, and the
embedded cluster's simulated nodes registered in it as kubelets (node certificates, heartbeat Leases).

It offers what tests use of ``simcluster.running()``'s cluster (``kubeconfig``, ``nodes``, ``core_v1()``,
``service_account_kubeconfig()``, ``wait_for()``), so that simcluster.plugins starts the nodes' device
plugins on it unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from extender.kubeapi import api_client
from realcluster.binaries import Binaries, find_binaries
from realcluster.components import Component
from realcluster.controlplane import ControlPlane, check_extra_flags
from realcluster.install import Tessera, start_tessera
from realcluster.kubeconfig import write_kubeconfig
from realcluster.pki import CertificateAuthority
from realcluster.stopsignals import Terminated, signals_held, stopped_by_signals
from simcluster.cluster import ClusterDescription, load_cluster
from simcluster.embedded import SimNode, make_node_directory, poll_until, stop_kubelets
from simcluster.kubelet.simkubelet import SimKubelet
from tessera.log import get_logger

NODE_LEASE_S = 40   # the kubelet's default nodeLeaseDurationSeconds
TOKEN_LIFETIME_S = 24 * 3600


@dataclass
class RealCluster:
    """A running real control plane with Tessera and simulated nodes."""

    workdir: Path
    binaries: Binaries
    control: ControlPlane
    nodes: dict[str, SimNode] = field(default_factory=dict)
    tessera: Tessera | None = None
    components: list[Component] = field(default_factory=list)   # Tessera's, started after the control plane
    service_account_kubeconfigs: dict[tuple[str, str], Path] = field(default_factory=dict)
    _admin_client: kubernetes.client.ApiClient | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.control.url

    @property
    def kubeconfig(self) -> Path:
        """The admin's kubeconfig (``system:masters``)."""
        assert self.control.admin_kubeconfig is not None
        return self.control.admin_kubeconfig

    def client(self, kubeconfig: str | Path | None = None) -> kubernetes.client.ApiClient:
        """A ``kubernetes`` client authenticated by ``kubeconfig``; the admin's, made once, by default."""
        if kubeconfig is not None:
            return api_client(str(kubeconfig))
        if self._admin_client is None:
            self._admin_client = api_client(str(self.kubeconfig))
        return self._admin_client

    def core_v1(self, kubeconfig: str | Path | None = None) -> kubernetes.client.CoreV1Api:
        """The core API as the admin (or as ``kubeconfig``'s identity)."""
        return kubernetes.client.CoreV1Api(self.client(kubeconfig))

    def kubectl(self, *args: str, kubeconfig: str | Path | None = None, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        """The built kubectl against this cluster (as the admin, or ``kubeconfig``'s identity)."""
        done = subprocess.run([self.binaries["kubectl"], f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
                              input=input, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def apply(self, objects: list[dict], *extra: str) -> subprocess.CompletedProcess:
        """``kubectl apply --server-side`` of ``objects`` as the admin."""
        if not objects:
            return subprocess.CompletedProcess([], 0, "", "")
        return self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=tessera-realcluster",
                            *extra, "-f", "-", input=yaml.safe_dump_all(objects))

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig with a token of the ServiceAccount ``namespace/name`` from the TokenRequest API, as
        the kubelet mounts into a pod running under it. Made once per account."""
        path = self.service_account_kubeconfigs.get((namespace, name))
        if path is None:
            request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"expirationSeconds": TOKEN_LIFETIME_S}}
            token = self.core_v1().create_namespaced_service_account_token(name, namespace, request).status.token
            path = write_kubeconfig(self.workdir / f"{namespace}.{name}.kubeconfig", self.url, self.control.ca.cert,
                                    token=token)
            self.service_account_kubeconfigs[(namespace, name)] = path
        return path

    def has_service_account(self, namespace: str, name: str = "default") -> bool:
        """Whether the ServiceAccount exists yet (the controller-manager makes each namespace's default)."""
        try:
            self.core_v1().read_namespaced_service_account(name, namespace)
            return True
        except kubernetes.client.ApiException:
            return False

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.1,
                 what: str = "condition") -> Any:
        """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what``."""
        return poll_until(predicate, timeout_s, interval_s, what)

    def node_kubeconfig(self, name: str) -> Path:
        """The kubeconfig of node ``name``'s kubelet: ``system:node:<name>`` in ``system:nodes``."""
        return self.control.kubeconfig_for(f"node-{name}", f"system:node:{name}", ("system:nodes",))


def _start_node(cluster: RealCluster, spec, index: int, oci_runtime: str | None, seed: int | None) -> SimNode:
    node = make_node_directory(cluster.workdir, spec)
    configuration = api_client(str(cluster.node_kubeconfig(spec.name))).configuration
    node.kubelet = SimKubelet(spec, configuration, node.root, oci_runtime=oci_runtime, node_lease_s=NODE_LEASE_S,
                              seed=None if seed is None else seed + index, nvml_description=node.nvml_description)
    node.kubelet.start()
    return node


@contextmanager
def running(description: ClusterDescription | str | Path | None = None, *, tessera: bool = True,
            kubelets: bool = True, oci_runtime: str | None = None, seed: int | None = None,
            feature_gates: str = "", binaries: Binaries | None = None,
            extra_flags: Mapping[str, Sequence[str]] | None = None, extender_flags: Sequence[str] = (),
            keep_workdir_on_error: bool = False) -> Iterator[RealCluster]:
    """Start the real control plane, Tessera (``tessera``) and the description's nodes (``kubelets``);
    stop everything by PID on exit and remove the work folder (kept when the body raised and
    ``keep_workdir_on_error``). ``extra_flags``: flags appended to a control-plane component's command
    line, by its name (etcd, kube-apiserver, kube-controller-manager, kube-scheduler); ``extender_flags``:
    flags appended to tessera-extender's (after deploy/'s own, so they win). Raises
    :class:`realcluster.BinariesMissing` without the programs."""
    log = get_logger("realcluster")
    binaries = binaries or find_binaries()
    if not isinstance(description, ClusterDescription):
        description = load_cluster(description)
    extra_flags = dict(extra_flags or {})
    check_extra_flags(extra_flags)
    with stopped_by_signals():   # SIGTERM or SIGINT: the finally below still stops every child
        workdir = Path(tempfile.mkdtemp(prefix="tessera-real-", dir="/tmp"))   # short: unix socket paths
        cluster, failed = None, False
        try:
            control = ControlPlane(workdir, binaries, CertificateAuthority(workdir / "pki"),
                                   extra_flags=extra_flags, feature_gates=feature_gates)
            cluster = RealCluster(workdir, binaries, control)
            control.start()
            cluster.wait_for(lambda: cluster.has_service_account("default"), timeout_s=120,
                             what="the controller-manager's ServiceAccount default/default")
            if tessera:
                cluster.tessera = start_tessera(cluster, workdir / "logs", extender_flags)
            if kubelets:
                for index, spec in enumerate(description.nodes):
                    cluster.nodes[spec.name] = _start_node(cluster, spec, index, oci_runtime, seed)
            log.info("realcluster_started", url=cluster.url, nodes=len(cluster.nodes), workdir=str(workdir))
            yield cluster
        except Terminated:   # stopped from outside: not the body's failure
            raise
        except BaseException:
            failed = True
            raise
        finally:
            with signals_held():
                if cluster is not None:
                    _stop(cluster)
                if failed and keep_workdir_on_error:
                    log.info("realcluster_workdir_kept", workdir=str(workdir))
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
                log.info("realcluster_stopped")


def _stop(cluster: RealCluster) -> None:
    """Stop the kubelets, Tessera's components, then the control plane, each by PID."""
    stop_kubelets(cluster.nodes)
    for component in reversed(cluster.components):
        component.stop()
    cluster.control.stop()

