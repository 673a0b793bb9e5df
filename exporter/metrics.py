"""The metric catalogue: every name the exporter serves, its type, help and labels.

GPU metrics keep dcgm-exporter's names, help texts, units and labels (``gpu``, ``UUID``,
``pci_bus_id``, ``device``, ``modelName``, ``Hostname``, ``DCGM_FI_DRIVER_VERSION``; ``GPU_I_PROFILE``
and ``GPU_I_ID`` on MIG instances; ``pod``, ``namespace``, ``container``; ``err_code`` and ``err_msg``
on ``DCGM_FI_DEV_XID_ERRORS``), as its release 4.5.3-4.8.2 writes them, so dashboards and alerts
written for dcgm-exporter work unchanged. (dcgm-exporter's main branch renamed ``Hostname`` to
``hostname`` after that release, in #655; Tessera follows once a release carries it.) Every counter
of its ``etc/default-counters.csv`` that NVML can give is served; see :mod:`tessera.devicecounters`
for the NVML call and unit behind each. Deliberate differences:

- dcgm-exporter types its ECC, retired-page, remapped-row, energy, PCIe-replay and NVLink fields
  ``counter`` without the ``_total`` suffix; prometheus_client cannot write a counter under such a
  name, so they are served ``untyped`` with the same names and values (PromQL treats both alike:
  ``rate()`` and ``increase()`` work). ``DCGM_FI_DEV_XID_ERRORS`` is a gauge in dcgm-exporter too (the last Xid).
- ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``, ``DCGM_FI_PROF_SM_OCCUPANCY``, ``DCGM_FI_PROF_PIPE_TENSOR_ACTIVE`` and
  ``DCGM_FI_PROF_DRAM_ACTIVE`` come from NVML's GPM metrics (``NVML_GPM_METRIC_GRAPHICS_UTIL``,
  ``SM_OCCUPANCY``, ``ANY_TENSOR_UTIL``, ``DRAM_BW_UTIL``, divided by 100), not from DCGM's profiling
  module: the nearest NVML figures to DCGM's fields, over the window between two collections
  (``interval_s``), where DCGM samples on its own clock. ``DCGM_FI_PROF_PCIE_TX_BYTES``/``RX_BYTES``
  come from ``nvmlDeviceGetPcieThroughput`` (NVML's 20 ms window), as dcgm-exporter's CSV says ("via NVML").
- ``modelName`` is camelCase, which ``promtool check metrics`` reports. The exporter setting
  ``dcgm_compatible_labels`` (default true) keeps it, because dcgm-exporter's dashboards and
  alerts group and filter by ``modelName`` and Tessera promises they work unchanged; set it
  false to serve ``model_name`` instead, which passes promtool's lint but breaks those queries.
  Tessera's own ``tessera_`` metrics are snake_case and lint-clean either way.
- Where dcgm-exporter already runs (the GPU Operator's default), the setting ``dcgm_series: false``
  leaves every ``DCGM_*`` series to it: Tessera then serves only its ``tessera_*`` series, whose
  ``UUID`` label joins them to dcgm-exporter's (``... * on (UUID) group_left DCGM_FI_DEV_GPU_TEMP``).

What cannot be read (and is left out rather than made up):

| figure | where | why |
|---|---|---|
| ``DCGM_FI_DEV_GPU_UTIL``, ``DCGM_FI_DEV_MEM_COPY_UTIL`` | MIG-enabled GPUs and each MIG instance | NVML reports no utilization in MIG mode; on Hopper, ``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` per instance stands in |
| the four GPM ``DCGM_FI_PROF_*`` above | GPUs before Hopper (V100, T4, A100, A30), and the first collection everywhere | NVML has GPM from Hopper on only; a GPM figure needs two samples, so it appears from the second collection |
| ``DCGM_FI_DEV_FB_USED``/``FB_FREE`` of the whole GPU | MIG-enabled GPUs | served per MIG instance instead, so sums do not count memory twice |
| ``tessera_container_gpu_utilization_ratio`` | MIG instances | NVML reports no per-process utilization on MIG devices (per-container memory is served) |
| other ``DCGM_FI_PROF_*`` (profiling) | everywhere | DCGM profiling fields without an NVML GPM equivalent read here |
| ``DCGM_FI_DEV_MEMORY_TEMP`` | GDDR cards (T4) | only HBM reports its own temperature |
| ``DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`` | PCIe boards without NVLink | no links to count |
| ``DCGM_FI_DEV_VGPU_LICENSE_STATUS`` | everywhere | vGPU licensing is not Tessera's; bare-metal GPUs have none |
| any field NVML answers NOT_SUPPORTED for | that GPU | e.g. ECC counters with ECC off; retired pages on Ampere and later (row remapping instead) |

On a GPU that several containers share (MPS, time-slicing), the ``DCGM_FI_DEV_*`` series carries
empty ``pod``/``namespace``/``container`` labels (dcgm-exporter gives the whole GPU's numbers to
each pod); per-container figures are the ``tessera_container_*`` metrics.
``tessera_container_gpu_utilization_ratio`` sums the SM utilization NVML reports per process
(``nvmlDeviceGetProcessUtilization``) over the container's processes; NVML reports a process only
when it used the GPU in the sample period, so one it leaves out counts 0. Under MPS, the figure is
per client process only if the driver attributes samples to the clients; samples given to the MPS
server's pid belong to no container and are not served.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "DCGM_LABELS", "MIG_LABELS", "POD_LABELS", "MetricSpec", "is_dcgm", "model_label", "spec"]

DCGM_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")
MODEL_LABEL_DCGM, MODEL_LABEL_SNAKE = "modelName", "model_name"
MIG_LABELS = ("GPU_I_PROFILE", "GPU_I_ID")
POD_LABELS = ("pod", "namespace", "container")
GPU_LABELS = ("gpu", "UUID", "Hostname")
CONTAINER_LABELS = ("namespace", "pod", "container", "gpu", "UUID", "GPU_I_ID", "Hostname")


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: its name as served, its Prometheus type, help text and label names."""

    name: str
    type: str  # gauge, counter (served with _total), unknown (served as untyped)
    help: str
    labels: tuple[str, ...]


def _dcgm(name: str, typ: str, help_text: str) -> MetricSpec:
    return MetricSpec(name, typ, help_text, DCGM_LABELS + POD_LABELS)


CATALOGUE: tuple[MetricSpec, ...] = (
    # ---- dcgm-exporter's names (help texts as in its default-counters.csv) ----
    _dcgm("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    _dcgm("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    _dcgm("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    _dcgm("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    _dcgm("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    MetricSpec("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.",
               DCGM_LABELS + POD_LABELS + ("err_code", "err_msg")),
    MetricSpec("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).",
               DCGM_LABELS + MIG_LABELS + POD_LABELS),
    MetricSpec("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).",
               DCGM_LABELS + MIG_LABELS + POD_LABELS),
    MetricSpec("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.",
               DCGM_LABELS + MIG_LABELS + POD_LABELS),
    MetricSpec("DCGM_FI_PROF_SM_OCCUPANCY", "gauge", "The ratio of number of warps resident on an SM.",
               DCGM_LABELS + MIG_LABELS + POD_LABELS),
    _dcgm("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "unknown", "Total number of single-bit volatile ECC errors."),
    _dcgm("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "unknown", "Total number of double-bit volatile ECC errors."),
    _dcgm("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "unknown", "Total number of single-bit persistent ECC errors."),
    _dcgm("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "unknown", "Total number of double-bit persistent ECC errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_SBE", "unknown", "Total number of retired pages due to single-bit errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_DBE", "unknown", "Total number of retired pages due to double-bit errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_PENDING", "unknown", "Total number of pages pending retirement."),
    _dcgm("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "unknown", "Number of remapped rows for uncorrectable errors"),
    _dcgm("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "unknown", "Number of remapped rows for correctable errors"),
    _dcgm("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
    _dcgm("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    _dcgm("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    _dcgm("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "unknown", "Total energy consumption since boot (in mJ)."),
    _dcgm("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "unknown", "Total number of PCIe retries."),
    _dcgm("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    _dcgm("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    _dcgm("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB)."),
    _dcgm("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "unknown",
          "Total number of NVLink bandwidth counters for all lanes."),
    MetricSpec("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.",
               DCGM_LABELS + MIG_LABELS + POD_LABELS),
    MetricSpec("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
               "Ratio of cycles the device memory interface is active sending or receiving data.",
               DCGM_LABELS + MIG_LABELS + POD_LABELS),
    _dcgm("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge", "The rate of data transmitted over the PCIe bus - including both "
          "protocol headers and data payloads - in bytes per second."),
    _dcgm("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", "The rate of data received over the PCIe bus - including both "
          "protocol headers and data payloads - in bytes per second."),
    # ---- Tessera: per GPU ----
    MetricSpec("tessera_gpu_last_collected_timestamp_seconds", "gauge",
               "Unix time of the GPU's last successful NVML reading.", GPU_LABELS),
    MetricSpec("tessera_gpu_stale", "gauge",
               "1 when the last NVML reading of the GPU failed and its values are the previous ones.", GPU_LABELS),
    MetricSpec("tessera_gpu_health", "gauge",
               "1 when the GPU is healthy, 0 when it is out; reason says why.", GPU_LABELS + ("reason",)),
    MetricSpec("tessera_gpu_mode", "gauge", "1 for the GPU's sharing mode (exclusive, mig, mps, timeslice).",
               GPU_LABELS + ("mode",)),
    MetricSpec("tessera_gpu_grants", "gauge", "Containers holding a grant of the resource on the GPU.",
               GPU_LABELS + ("resource",)),
    MetricSpec("tessera_gpu_allocatable_units", "gauge",
               "Units of the resource the GPU offers (percent for mps-core, GiB for mps-memory, instances, replicas).",
               GPU_LABELS + ("resource",)),
    MetricSpec("tessera_gpu_free_units", "gauge", "Units of the resource on the GPU that no container holds.",
               GPU_LABELS + ("resource",)),
    MetricSpec("tessera_gpu_memory_unattributed_bytes", "gauge",
               "GPU memory held by processes that no container record claims.", GPU_LABELS),
    MetricSpec("tessera_gpu_xid_errors", "counter", "Xid errors the driver reported for the GPU, by Xid.",
               GPU_LABELS + ("xid",)),
    # ---- Tessera: per container and GPU (or MIG instance) ----
    MetricSpec("tessera_container_gpu_memory_used_bytes", "gauge",
               "GPU memory used by the container's processes on the GPU.", CONTAINER_LABELS),
    MetricSpec("tessera_container_gpu_processes", "gauge", "The container's processes on the GPU.",
               CONTAINER_LABELS),
    MetricSpec("tessera_container_gpu_memory_grant_bytes", "gauge",
               "GPU memory the container's grant allows on the GPU.", CONTAINER_LABELS),
    MetricSpec("tessera_container_gpu_utilization_ratio", "gauge",
               "Share of time the GPU's SMs ran the container's kernels: NVML's per-process SM utilization "
               "summed over its processes (0..1).", CONTAINER_LABELS),
    MetricSpec("tessera_container_gpu_core_grant_ratio", "gauge",
               "Share of the GPU's streaming multiprocessors the container's grant allows (0..1).",
               CONTAINER_LABELS),
    MetricSpec("tessera_container_gpu_memory_overuse_bytes", "gauge",
               "GPU memory the container uses beyond its grant (0 within it).", CONTAINER_LABELS),
    MetricSpec("tessera_container_over_grant", "gauge",
               "1 while the container uses more GPU memory than its grant.", CONTAINER_LABELS),
    # ---- Tessera: the exporter itself ----
    MetricSpec("tessera_exporter_collections", "counter", "Collections the exporter has made.", ()),
    MetricSpec("tessera_exporter_collection_duration_seconds", "gauge", "How long the last collection took.", ()),
    MetricSpec("tessera_exporter_last_collection_timestamp_seconds", "gauge",
               "Unix time of the last collection.", ()),
    MetricSpec("tessera_exporter_podresources_up", "gauge",
               "1 when the last read of the kubelet's pod-resources API worked.", ()),
    MetricSpec("tessera_exporter_podresources_errors", "counter",
               "Failed reads of the kubelet's pod-resources API.", ()),
    MetricSpec("tessera_exporter_nvml_errors", "counter", "GPU readings that NVML failed.", ()),
    MetricSpec("tessera_exporter_inventory_errors", "counter",
               "Failed reads of the node inventory from the API server.", ()),
    MetricSpec("tessera_exporter_events", "counter", "Kubernetes Events sent about pods.", ()),
    MetricSpec("tessera_exporter_event_errors", "counter", "Kubernetes Events that could not be sent.", ()),
)

_BY_NAME = {m.name: m for m in CATALOGUE}


def spec(name: str) -> MetricSpec:
    """The catalogue entry of a metric."""
    return _BY_NAME[name]


def model_label(dcgm_compatible: bool) -> str:
    """The name of the GPU model label: dcgm-exporter's ``modelName``, or snake_case ``model_name``."""
    return MODEL_LABEL_DCGM if dcgm_compatible else MODEL_LABEL_SNAKE


def is_dcgm(name: str) -> bool:
    """Whether a metric is one of dcgm-exporter's (left out where dcgm-exporter runs beside Tessera)."""
    return name.startswith("DCGM_")
