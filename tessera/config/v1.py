"""Config file version v1: one YAML file, a section per daemon, each key with its default and meaning.

    version: v1
    logging: {level: info, format: auto}
    deviceplugin: {default_mode: mps, gpu_modes: {0: mig}}
    draplugin: {gpus: [4, 5]}
    extender: {policy: fragmentation}
    hook: {runtime: containerd}
    exporter: {interval_s: 5}

This file is a contract with the admin: a key is renamed only with a new version.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from tessera import (
    GPU_MODES,
    NAMESPACE,
    SERVICE_ACCOUNT_DEVICE_PLUGIN,
    SERVICE_ACCOUNT_EXTENDER,
    service_account_username,
)
from tessera.config.schema import ConfigError, setting
from tessera.httpserve import parse_listen
from tessera.policy_names import DEFAULT_POLICY, POLICIES

CONFIG_VERSION = "v1"
DEFAULT_APPLICATION_XIDS = [13, 31, 43, 45, 68, 109]
DEFAULT_FATAL_XIDS = [48, 63, 64, 79, 94, 95]
RUNTIMES = ("containerd", "crio")
DEVICE_LIST_STRATEGIES = ("device-nodes", "cdi")
GFD_LABEL_MODES = ("write", "leave")
DRA_GPU_MODES = ("exclusive", "mps", "mig", "timeslice")
DRA_SERVED_GPUS_FILE = "served-gpus.json"   # in draplugin.plugin_path
DRA_CHECKPOINT_FILE = "checkpoint.json"   # in draplugin.plugin_path
# Who may add, change or remove tessera.io/* annotations on a pod after its creation: deploy/'s ServiceAccounts.
DEFAULT_LEDGER_WRITERS = [service_account_username(NAMESPACE, SERVICE_ACCOUNT_DEVICE_PLUGIN),
                          service_account_username(NAMESPACE, SERVICE_ACCOUNT_EXTENDER)]


@dataclass(frozen=True)
class LoggingConfig:
    level: str = setting("info", "log level", choices=("debug", "info", "warning", "error"))
    format: str = setting("auto", "log format: json, console, or auto (console on a terminal, JSON otherwise)",
                          choices=("auto", "json", "console"))


@dataclass(frozen=True)
class HttpPortConfig:
    """What a daemon's HTTP ports let clients take (``tessera.httpserve``): every section that serves
    HTTP has these keys."""

    http_max_connections: int = setting(512, "connections each HTTP port holds at once; one more is closed at "
                                             "accept", minimum=1, maximum=65536)
    http_request_timeout_s: float = setting(10.0, "seconds a client has for the TLS handshake and for each "
                                                  "request's headers and body, and to take each answer; a slower "
                                                  "client is disconnected", minimum=0.1)
    http_idle_timeout_s: float = setting(60.0, "seconds a keep-alive connection may wait for its next request",
                                         minimum=0.1)
    http_max_connections_per_client: int = setting(64, "connections one client address holds at once on each "
                                                       "HTTP port; one more from it is closed at accept, so one "
                                                       "tenant cannot take every slot", minimum=1, maximum=65536)
    http_workers: int = setting(8, "threads per HTTP port that answer complete requests", minimum=1, maximum=256)


def is_loopback(listen: str) -> bool:
    """Whether a ``host:port`` listen address is reachable from this host only."""
    host, _ = parse_listen(listen)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DevicePluginConfig(HttpPortConfig):
    device_plugin_path: str = setting("/var/lib/kubelet/device-plugins",
                                      "the kubelet's device-plugin directory (kubelet.sock lives here)")
    pod_resources_socket: str = setting("/var/lib/kubelet/pod-resources/kubelet.sock",
                                        "the kubelet's pod-resources API socket")
    kubeconfig: str = setting("", "kubeconfig file for the API server; empty means in-cluster config")
    node_name: str = setting("", "this node's name; empty means the NODE_NAME environment variable")
    default_mode: str = setting("exclusive", "mode of every GPU unless the node label or gpu_modes says otherwise",
                                choices=GPU_MODES)
    gpu_modes: dict[int, str] = setting({}, "mode per GPU index, overriding default_mode and the node label",
                                        choices=GPU_MODES, flag=False)
    timeslice_replicas: int = setting(4, "replicas advertised per time-sliced GPU", minimum=1, maximum=64)
    node_config_check_s: float = setting(5.0, "seconds between looks at the config file for a change (the kubelet "
                                              "rewrites a mounted ConfigMap within about a minute of an edit); modes "
                                              "and replicas change live, other keys restart the plugin in place",
                                         minimum=0.5, maximum=3600.0)
    node_config_restart_after_s: float = setting(30.0, "a config change that needs a restart in place waits until "
                                                       "the plugin has run this long since its last start (no "
                                                       "restart loop from a config that flips back and forth)",
                                                 minimum=0.0, maximum=3600.0)
    gfd_labels: str = setting("write", "GPU Feature Discovery's nvidia.com/* node labels (gpu.product, gpu.count, "
                                       "gpu.memory, gpu.family, cuda.*, mig.*, mig-<profile>.*, ...): write (Tessera "
                                       "writes them, never over a label another writer put there first) or leave "
                                       "(Tessera writes none and gives up those it wrote, for a GFD that runs "
                                       "beside it)", choices=GFD_LABEL_MODES)
    application_xids: list[int] = setting(DEFAULT_APPLICATION_XIDS,
                                          "Xids caused by the application: the GPU stays healthy", flag=False)
    fatal_xids: list[int] = setting(DEFAULT_FATAL_XIDS,
                                    "Xids after which a GPU stays out until it reads healthy again", flag=False)
    xid_quiet_period_s: float = setting(300.0, "seconds without a further Xid before a GPU is healthy again",
                                        minimum=0)
    device_root: str = setting("/", "where the GPU device nodes are on the host: / on a real node (/dev/nvidia0); "
                                    "a fake node's own folder in the embedded cluster")
    device_list_strategy: str = setting("device-nodes", "how Allocate hands devices over: device nodes or CDI names",
                                        choices=DEVICE_LIST_STRATEGIES)
    mps_pipe_directory: str = setting("/run/tessera/mps/pipe", "MPS control daemon pipe directory on the host")
    mps_shm_directory: str = setting("/run/tessera/mps/shm", "MPS shared-memory directory, mounted as /dev/shm")
    mps_log_directory: str = setting("/run/tessera/mps/log", "MPS control daemon log directory on the host")
    mps_user: int = setting(1000, "uid the MPS daemon and its clients run as", minimum=0)
    mps_control_binary: str = setting("nvidia-cuda-mps-control",
                                      "the MPS control program the plugin talks to the MPS daemon through; on fake "
                                      "nodes simcluster/fakemps/control.py")
    evict_on_overuse: bool = setting(False, "evict a pod whose process uses more GPU memory than its grant")
    overuse_dir: str = setting("/run/tessera/overuse", "where the exporter marks containers over their GPU memory "
                                                       "grant (read when evict_on_overuse is on)")
    grant_key_path: str = setting("/etc/tessera/node-grant.key", "per-node key that signs grants for the hook")
    assignment_public_key_path: str = setting("/etc/tessera/extender.pub",
                                              "the extender's Ed25519 public keys for assignments: a PEM file of "
                                              "one key or several (the current and previous ones while a key "
                                              "rotation drains), or a folder of such files")
    listen: str = setting("0.0.0.0:8081", "address:port of /healthz and /metrics")


@dataclass(frozen=True)
class DraPluginConfig(HttpPortConfig):
    gpus: list[int] = setting([], "GPU indices the DRA driver publishes; the device plugin leaves them out, so no "
                                  "GPU is served both ways (empty: the driver publishes nothing)")
    gpu_modes: dict[int, str] = setting({}, "mode per GPU index of draplugin.gpus: exclusive (one claim takes the "
                                            "GPU), mps (claims share it through MPS as consumable capacity: "
                                            "cores and memory) or mig (a GPU the admin put in MIG mode: each claim "
                                            "gets a MIG device made for it at prepare and removed at unprepare; "
                                            "the driver then owns the GPU's MIG instances) or timeslice (up to "
                                            "timeslice_replicas claims share it whole, taking turns); unlisted "
                                            "GPUs are exclusive",
                                        choices=DRA_GPU_MODES, flag=False)
    application_xids: list[int] = setting(DEFAULT_APPLICATION_XIDS,
                                          "Xids caused by the application: the GPU stays healthy", flag=False)
    fatal_xids: list[int] = setting(DEFAULT_FATAL_XIDS,
                                    "Xids after which a GPU stays out until it reads healthy again", flag=False)
    xid_quiet_period_s: float = setting(300.0, "seconds without a further Xid before a GPU is healthy again",
                                        minimum=0)
    unhealthy_taint_effect: str = setting("NoSchedule", "the device taint an unhealthy GPU's devices get in the "
                                                        "ResourceSlice: NoSchedule (no new claims) or NoExecute "
                                                        "(also evicts the pods using it)",
                                          choices=("NoSchedule", "NoExecute"))
    timeslice_replicas: int = setting(4, "claims that may hold one timeslice GPU at once (the device plugin's "
                                         "timeslice_replicas, for the driver's GPUs)", minimum=1, maximum=64)
    mps_pipe_directory: str = setting("/run/tessera/mps/pipe", "MPS control daemon pipe directory on the host (the "
                                                               "device plugin's daemon serves both)")
    mps_shm_directory: str = setting("/run/tessera/mps/shm", "MPS shared-memory directory, mounted as /dev/shm")
    driver_name: str = setting("gpu.tessera.io", "the DRA driver's name: ResourceSlices' and DeviceClasses' "
                                                 "spec.driver, and its kubelet plugin folder's name")
    plugins_registry_path: str = setting("/var/lib/kubelet/plugins_registry",
                                         "the kubelet's plugin registration folder (<--root-dir>/plugins_registry)")
    plugin_path: str = setting("/var/lib/kubelet/plugins/gpu.tessera.io",
                               "this driver's own folder: its DRA socket and its checkpoint (which the device "
                               "plugin reads for the MPS shares' daemon defaults: move it in this file, not by "
                               "the driver's flag alone)")
    cdi_dir: str = setting("/var/run/cdi", "where the per-claim CDI specs are written: one of containerd's "
                                           "cdi_spec_dirs")
    device_root: str = setting("/", "where the GPU device nodes are on the host: / on a real node; a fake node's own "
                                    "folder in the test tier")
    grant_key_path: str = setting("/etc/tessera/node-grant.key", "per-node key that signs grants for the hook (the "
                                                                 "device plugin's: one key per node)")
    kubeconfig: str = setting("", "kubeconfig file for the API server; empty means in-cluster config")
    node_name: str = setting("", "this node's name; empty means the NODE_NAME environment variable")
    node_config_check_s: float = setting(5.0, "seconds between looks at the config file for a change (the kubelet "
                                              "rewrites a mounted ConfigMap within about a minute of an edit); a "
                                              "change to this section restarts the driver in place",
                                         minimum=0.5, maximum=3600.0)
    node_config_restart_after_s: float = setting(30.0, "a config change waits until the driver has run this long "
                                                       "since its last start before it restarts in place",
                                                 minimum=0.0, maximum=3600.0)
    listen: str = setting("0.0.0.0:8082", "address:port of /healthz and /metrics")

    @property
    def checkpoint_path(self) -> str:
        """The driver's checkpoint of prepared claims, in ``plugin_path``: the driver writes it, the device
        plugin reads the MPS shares in it (the MPS daemon's defaults are the device plugin's to set)."""
        return os.path.join(self.plugin_path, DRA_CHECKPOINT_FILE)

    @property
    def served_gpus_path(self) -> str:
        """The GPUs the running driver serves (their UUIDs), in ``plugin_path``: the device plugin does not
        take one of them back from a config edit until the driver has let it go."""
        return os.path.join(self.plugin_path, DRA_SERVED_GPUS_FILE)


@dataclass(frozen=True)
class ExtenderConfig(HttpPortConfig):
    listen: str = setting("127.0.0.1:8888", "address:port of the scheduler extender's verbs (and /healthz, /metrics): "
                                            "plain HTTP on a loopback address for a kube-scheduler in the same pod; "
                                            "any other address needs client_ca_path")
    client_ca_path: str = setting("", "CA certificate(s) of kube-scheduler's client certificate: the verb port then "
                                      "serves HTTPS with tls_cert_path and answers only clients that present a "
                                      "certificate this CA signed (the extender's tlsConfig certFile/keyFile in the "
                                      "KubeSchedulerConfiguration); empty: plain HTTP")
    allow_unauthenticated_verbs: bool = setting(False, "serve the verbs without client certificates on a "
                                                       "non-loopback address (only where something else, such as "
                                                       "a service mesh, lets nobody but kube-scheduler reach it)")
    metrics_listen: str = setting("", "address:port of a plain-HTTP port with only /healthz and /metrics, for "
                                      "probes and Prometheus when the verb port asks for client certificates; "
                                      "empty: none")
    webhook_listen: str = setting("0.0.0.0:8443", "address:port of the admission webhook (HTTPS)")
    tls_cert_path: str = setting("/etc/tessera/webhook/tls.crt", "TLS certificate of the webhook and, with "
                                                                 "client_ca_path, of the verb port")
    tls_key_path: str = setting("/etc/tessera/webhook/tls.key", "its private key")
    kubeconfig: str = setting("", "kubeconfig file for the API server; empty means in-cluster config")
    policy: str = setting(DEFAULT_POLICY, "cluster default placement policy", choices=POLICIES)
    scheduler_name: str = setting("tessera-scheduler", "schedulerName the webhook gives pods that ask for Tessera "
                                                       "resources (the kube-scheduler profile with this extender)")
    routed_schedulers: list[str] = setting(
        ["default-scheduler"],
        "schedulerName values the webhook replaces with scheduler_name on pods that ask for Tessera resources; "
        "an empty schedulerName counts as default-scheduler (the API server's default). A pod naming any other "
        "scheduler (Volcano, a Kueue setup's own) keeps it, and is still checked", flag=False)
    ledger_writers: list[str] = setting(
        DEFAULT_LEDGER_WRITERS,
        "API server user names that may add, change or remove tessera.io/* annotations on a pod after its "
        "creation (the webhook refuses everyone else): Tessera's own ServiceAccounts, "
        "system:serviceaccount:<namespace>:<name>", flag=False)
    workload_label: str = setting("", "label whose value names a workload for spread-workload (else owner)")
    filter_best_nodes: int = setting(
        4, "filter answers at most this many of the nodes a pod fits: those the placement policy scores best, so "
           "kube-scheduler scores and picks among few nodes, and a pod of the same shape right after is sent "
           "elsewhere until this one's bind arrives (0: every node that fits)", minimum=0)
    shape_window: int = setting(1000, "pods remembered when learning typical task shapes", minimum=1)
    typical_shapes: list[str] = setting([], "typical pods for the fragmentation policy, instead of learning "
                                            "them: 'mps-core=50,cpu=4,memory=16Gi', 'gpu=1,models=T4|A10'; a "
                                            "repeated shape weighs more (empty: learn from the last "
                                            "shape_window pods)", flag=False)
    dra_scoring: bool = setting(False, "follow ResourceSlices, ResourceClaims and their templates (resource.k8s.io/v1) "
                                       "so that pods whose claims ask Tessera's DeviceClasses are routed to "
                                       "scheduler_name and their nodes scored by the placement policy "
                                       "(prioritize-dra). Off by default: on the Alibaba trace sample "
                                       "(bench/dra_placement_bench.py) kube-scheduler's own scoring allocated "
                                       "as much or more; turn it on for Tessera's policies on DRA pods")
    signing_key_path: str = setting("/etc/tessera/extender.key", "Ed25519 private key that signs assignments")
    trusted_keys_path: str = setting("", "PEM file (one key or several) or folder of the public keys whose "
                                         "assignments the extender trusts beside its signing key's own: the device "
                                         "plugins' assignment key set, which keeps the previous key while a key "
                                         "rotation drains (README, Rotating the signing key); empty: the signing "
                                         "key's only")
    max_body_bytes: int = setting(8 * 1024 * 1024, "largest request body accepted", minimum=1024)
    leader_election: bool = setting(True, "elect one active replica through a coordination/v1 Lease")
    lease_namespace: str = setting("kube-system", "namespace of the leader Lease")
    lease_name: str = setting("tessera-extender", "name of the leader Lease")
    lease_duration_s: float = setting(15.0, "seconds a leader's Lease lasts without renewal", minimum=1)
    lease_retry_s: float = setting(2.0, "seconds between Lease renewals or acquisition attempts", minimum=0.1)

    def __post_init__(self) -> None:
        for key in ("listen", "webhook_listen", "metrics_listen"):
            value = getattr(self, key)
            if value or key != "metrics_listen":
                try:
                    parse_listen(value)
                except ValueError as exc:
                    raise ConfigError(f"extender.{key}: {exc}", f"extender.{key}") from None
        if not self.client_ca_path and not self.allow_unauthenticated_verbs and not is_loopback(self.listen):
            raise ConfigError(f"extender.listen {self.listen} is reachable from other hosts and extender.client_ca_path "
                              f"is empty, so anyone who reaches it could bind pods: set client_ca_path (the CA of "
                              f"kube-scheduler's client certificate), or listen on 127.0.0.1 beside kube-scheduler",
                              "extender.listen")


@dataclass(frozen=True)
class HookConfig:
    runtime: str = setting("containerd", "the container runtime whose annotation keys name the pod",
                           choices=RUNTIMES)
    state_dir: str = setting("/run/tessera/containers", "where container records for the exporter are kept")
    grant_key_path: str = setting("/etc/tessera/node-grant.key", "per-node key that verifies grants")
    allow_privileged: bool = setting(False, "let privileged containers that carry a grant start")
    mps_user: int = setting(1000, "uid MPS clients must run as", minimum=0)
    exempt_namespaces: list[str] = setting(
        ["kube-system", "tessera-system"],
        "namespaces whose containers may reach GPUs without a grant (Tessera's own DaemonSets, the driver); "
        "only admins create pods there")


@dataclass(frozen=True)
class ExporterConfig(HttpPortConfig):
    listen: str = setting("0.0.0.0:9400", "address:port of /metrics and /healthz")
    pod_resources_socket: str = setting("/var/lib/kubelet/pod-resources/kubelet.sock",
                                        "the kubelet's pod-resources API socket")
    interval_s: float = setting(5.0, "seconds between NVML collections", minimum=0.1)
    state_dir: str = setting("/run/tessera/containers", "the hook's container records")
    kubeconfig: str = setting("", "kubeconfig file for the API server; empty means in-cluster config")
    dcgm_compatible_labels: bool = setting(True, "keep dcgm-exporter's label names (modelName) so its dashboards "
                                                 "work; false uses snake_case names (model_name) that promtool's "
                                                 "lint accepts")
    dcgm_series: bool = setting(True, "serve the DCGM_* series under dcgm-exporter's names; false where "
                                      "dcgm-exporter already runs on the node (the GPU Operator's default): "
                                      "then only Tessera's tessera_* series, joinable on the UUID label, so no "
                                      "DCGM_* series is scraped twice")
    proc_root: str = setting("/proc", "where host processes are read (/proc/<pid>/cgroup); the DaemonSet runs "
                                      "with hostPID")
    overuse_dir: str = setting("/run/tessera/overuse", "eviction switch: one file per container over its GPU "
                                                       "memory grant, read by the device plugin")
    node_name: str = setting("", "this node's name: the Hostname label, the Node whose inventory is read, the "
                                 "Events' source; empty means $NODE_NAME, else the host name")


@dataclass(frozen=True)
class TesseraConfig:
    """The whole config file."""

    version: str = setting(CONFIG_VERSION, "config format version", choices=(CONFIG_VERSION,), flag=False)
    logging: LoggingConfig = setting(LoggingConfig(), "logging", flag=False)
    deviceplugin: DevicePluginConfig = setting(DevicePluginConfig(), "device plugin", flag=False)
    draplugin: DraPluginConfig = setting(DraPluginConfig(), "DRA driver (kubelet plugin)", flag=False)
    extender: ExtenderConfig = setting(ExtenderConfig(), "scheduler extender and webhook", flag=False)
    hook: HookConfig = setting(HookConfig(), "OCI hook", flag=False)
    exporter: ExporterConfig = setting(ExporterConfig(), "exporter", flag=False)

    def consistency_errors(self) -> list[ConfigError]:
        """What no single key shows: a GPU index named twice in ``draplugin.gpus``, a device plugin mode
        for a GPU the DRA driver serves (the plugin leaves it out, so the mode would be ignored), a DRA
        mode for a GPU the driver does not serve (the driver would refuse it at start)."""
        errors = []
        dra = self.draplugin.gpus
        for i, index in enumerate(dra):
            if index in dra[:i]:
                key = f"draplugin.gpus[{i}]"
                errors.append(ConfigError(f"{key}: GPU index {index} is named twice", key))
        for index in self.deviceplugin.gpu_modes:
            if index in dra:
                key = f"deviceplugin.gpu_modes.{index}"
                errors.append(ConfigError(f"{key}: GPU {index} is in draplugin.gpus, so the DRA driver serves it and "
                                          f"the device plugin leaves it out: give its mode in draplugin.gpu_modes", key))
        for index in self.draplugin.gpu_modes:
            if index not in dra:
                key = f"draplugin.gpu_modes.{index}"
                errors.append(ConfigError(f"{key}: GPU {index} is not in draplugin.gpus, so the DRA driver does not "
                                          f"serve it: add it there or give its mode in deviceplugin.gpu_modes", key))
        return errors
