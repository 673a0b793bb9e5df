"""etcd, kube-apiserver, kube-controller-manager and the default kube-scheduler on loopback ports
chosen at random, each with the identity a cluster gives it (``kubeadm``'s names), RBAC and Node
authorization and the default admission chain (webhooks, ResourceQuota, NodeRestriction) on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from realcluster.binaries import Binaries
from realcluster.components import Component, await_ready, https_ok
from realcluster.kubeconfig import write_kubeconfig
from realcluster.pki import CertificateAuthority, KeyPair, write_service_account_keys
from simcluster.readiness import http_ok
from tessera.daemonproc import free_port

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/24"   # never dialled: nothing routes it here (no kube-proxy)
ADMISSION_PLUGINS = "NodeRestriction"       # on top of the default set (webhooks, ResourceQuota, ServiceAccount, ...)
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def check_extra_flags(extra_flags: Mapping[str, Sequence[str]]) -> None:
    """ValueError naming any key of ``extra_flags`` that is not a component of the control plane."""
    unknown = sorted(set(extra_flags) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"extra flags for {', '.join(unknown)}: not a component (one of {', '.join(COMPONENTS)})")


@dataclass
class ControlPlane:
    """The running control plane: its URL, CA, admin kubeconfig and components."""

    workdir: Path
    binaries: Binaries
    ca: CertificateAuthority
    url: str = ""
    admin: KeyPair | None = None
    admin_kubeconfig: Path | None = None
    components: list[Component] = field(default_factory=list)
    # Flags appended to a component's command line, by name (COMPONENTS): e.g. the benches' light nodes
    # stay Ready without heartbeats with {"kube-controller-manager": ["--node-monitor-grace-period=1h"]}.
    extra_flags: Mapping[str, Sequence[str]] = field(default_factory=dict)   # checked by check_extra_flags
    feature_gates: str = ""   # --feature-gates for every Kubernetes component (not etcd)

    def kubeconfig_for(self, stem: str, common_name: str, organizations: tuple[str, ...] = ()) -> Path:
        """A kubeconfig authenticating with a client certificate for ``common_name``/``organizations``."""
        pair = self.ca.issue(stem, common_name, organizations=organizations)
        return write_kubeconfig(self.workdir / f"{stem}.kubeconfig", self.url, self.ca.cert, cert=pair.cert,
                                key=pair.key)

    def start(self) -> ControlPlane:
        """Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler, each awaited ready."""
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._start_etcd(logs)
        self._start_apiserver(logs)
        self._start_controller_manager(logs)
        self._start_scheduler(logs)
        return self

    def stop(self) -> None:
        """Stop every component, the last started first."""
        for component in reversed(self.components):
            component.stop()

    def _add(self, component: Component) -> Component:
        if self.feature_gates and component.name != "etcd":
            component.argv.append(f"--feature-gates={self.feature_gates}")
        component.argv.extend(self.extra_flags.get(component.name, ()))
        self.components.append(component.start())
        return component

    def _start_etcd(self, logs: Path) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        etcd = self._add(Component("etcd", [
            self.binaries["etcd"], "--name=realcluster", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=realcluster=http://127.0.0.1:{peer}", "--unsafe-no-fsync", "--log-level=warn"],
            logs / "etcd.log"))
        await_ready(etcd, lambda: http_ok(f"{self.etcd_url}/health"), "etcd answering /health")

    def _start_apiserver(self, logs: Path) -> None:
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        serving = self.ca.issue("apiserver", "kube-apiserver", client=False, server=True,
                                dns_names=("localhost", "kubernetes", "kubernetes.default",
                                           "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"),
                                ips=("127.0.0.1", "10.96.0.1"))
        # system:masters: a real kubelet's webhook authorizer then lets the API server read its logs and
        # exec into its pods without a binding (kubeadm binds its own group to cluster-admin instead).
        kubelet_client = self.ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                       organizations=("system:masters",))
        self.service_account = write_service_account_keys(self.workdir / "pki")
        self.admin = self.ca.issue("admin", "kubernetes-admin", organizations=("system:masters",))
        self.admin_kubeconfig = write_kubeconfig(self.workdir / "admin.kubeconfig", self.url, self.ca.cert,
                                                 cert=self.admin.cert, key=self.admin.key)
        argv = [self.binaries["kube-apiserver"], f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
                f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={self.ca.cert}",
                f"--kubelet-client-certificate={kubelet_client.cert}", f"--kubelet-client-key={kubelet_client.key}",
                # A node's name resolves nowhere here: reach kubelets (logs, exec) at their InternalIP.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.service_account.cert}",
                f"--service-account-signing-key-file={self.service_account.key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=Node,RBAC", f"--enable-admission-plugins={ADMISSION_PLUGINS}",
                # The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints refuse.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true", "--profiling=false", "--v=1"]
        apiserver = self._add(Component("kube-apiserver", argv, logs / "kube-apiserver.log"))
        await_ready(apiserver, lambda: https_ok(f"{self.url}/readyz", self.ca.cert, self.admin.cert, self.admin.key),
                    "kube-apiserver answering /readyz")

    def _start_controller_manager(self, logs: Path) -> None:
        kubeconfig = self.kubeconfig_for("kube-controller-manager", "system:kube-controller-manager")
        port = free_port()
        argv = [self.binaries["kube-controller-manager"], f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={port}", "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.service_account.key}", f"--root-ca-file={self.ca.cert}",
                f"--cluster-signing-cert-file={self.ca.cert}", f"--cluster-signing-key-file={self.ca.key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}", "--profiling=false", "--v=1"]
        manager = self._add(Component("kube-controller-manager", argv, logs / "kube-controller-manager.log"))
        await_ready(manager, lambda: https_ok(f"https://127.0.0.1:{port}/healthz", None),
                    "kube-controller-manager answering /healthz")

    def _start_scheduler(self, logs: Path) -> None:
        kubeconfig = self.kubeconfig_for("kube-scheduler", "system:kube-scheduler")
        port = free_port()
        argv = [self.binaries["kube-scheduler"], f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={port}", "--leader-elect=false", "--v=1"]
        scheduler = self._add(Component("kube-scheduler", argv, logs / "kube-scheduler.log"))
        await_ready(scheduler, lambda: https_ok(f"https://127.0.0.1:{port}/healthz", None),
                    "kube-scheduler answering /healthz")
