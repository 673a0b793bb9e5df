"""What NVML measures between two reads: GPM metrics and per-process utilization.

Both need state from one read to the next, which :class:`ActivitySampler` keeps for
:class:`tessera.nvml.Nvml` (the only other module that calls pynvml):

- GPM (GPU Performance Monitoring, Hopper on): each read takes a new GPM sample of a GPU
  (``nvmlGpmSampleGet``) or of one of its MIG GPU instances (``nvmlGpmMigSampleGet``) and asks
  ``nvmlGpmMetricsGet`` for the figures between it and the previous sample. The first read of a
  device has no previous sample, so no figures; a GPU without GPM (before Hopper, or a driver
  without it) never has any.
- Per-process utilization (``nvmlDeviceGetProcessUtilization``): the samples newer than the last
  one seen on that GPU. NVML returns one per process that had non-zero utilization in the sample
  period, so a process it leaves out used 0 %; NOT_FOUND means no process ran at all. MIG devices
  do not report it (None: unknown, not 0).
"""

from __future__ import annotations

import pynvml
from pynvml import NVMLError

from tessera.gpu import GpmReading
from tessera.log import get_logger

__all__ = ["ActivitySampler"]

log = get_logger("nvml")

_ABSENT = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound)
_METRICS = (pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL, pynvml.NVML_GPM_METRIC_SM_UTIL,
            pynvml.NVML_GPM_METRIC_SM_OCCUPANCY, pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
            pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL)

ProcessUtil = dict[int, tuple[int, int]]  # pid -> (smUtil %, memUtil %)


class ActivitySampler:
    """GPM samples and last-seen timestamps per device, kept between reads; ``close()`` frees them."""

    def __init__(self) -> None:
        self._samples: dict[str, object] = {}  # device key (GPU or MIG UUID) -> its last GPM sample
        self._gpm_support: dict[str, bool] = {}  # GPU UUID -> whether the driver does GPM on it
        self._seen_us: dict[str, int] = {}  # GPU UUID -> newest process-utilization sample seen
        self._warned: dict[str, str] = {}

    # ---- GPM ------------------------------------------------------------------------------------
    def gpm(self, handle, gpu_uuid: str, key: str, gpu_instance_id: int | None = None) -> GpmReading | None:
        """GPM figures of the GPU (or its GPU instance ``gpu_instance_id``) since the last call for ``key``."""
        if not self._gpm_supported(handle, gpu_uuid):
            return None
        sample = pynvml.nvmlGpmSampleAlloc()
        try:
            if gpu_instance_id is None:
                pynvml.nvmlGpmSampleGet(handle, sample)
            else:
                pynvml.nvmlGpmMigSampleGet(handle, gpu_instance_id, sample)
        except NVMLError as err:
            pynvml.nvmlGpmSampleFree(sample)
            self._drop(key)
            self._warn(key, "gpm_sample_failed", err)
            return None
        previous = self._samples.get(key)
        self._samples[key] = sample
        if previous is None:
            return None
        try:
            return self._metrics(previous, sample)
        except NVMLError as err:
            self._warn(key, "gpm_metrics_failed", err)
            return None
        finally:
            pynvml.nvmlGpmSampleFree(previous)

    def _gpm_supported(self, handle, gpu_uuid: str) -> bool:
        known = self._gpm_support.get(gpu_uuid)
        if known is None:
            try:
                known = bool(pynvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
            except _ABSENT:
                known = False
            self._gpm_support[gpu_uuid] = known
        return known

    @staticmethod
    def _metrics(sample1, sample2) -> GpmReading:
        request = pynvml.c_nvmlGpmMetricsGet_t()
        request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(_METRICS)
        request.sample1, request.sample2 = sample1, sample2
        for i, metric in enumerate(_METRICS):
            request.metrics[i].metricId = metric
        pynvml.nvmlGpmMetricsGet(request)
        values = [m.value if m.nvmlReturn == pynvml.NVML_SUCCESS else None
                  for m in request.metrics[:len(_METRICS)]]
        return GpmReading(*values)

    # ---- per-process utilization ----------------------------------------------------------------
    def process_utilization(self, handle, gpu_uuid: str) -> ProcessUtil | None:
        """Per pid, (SM %, memory %) of its newest sample since the last call; None where NVML has none."""
        since = self._seen_us.get(gpu_uuid, 0)
        try:
            rows = pynvml.nvmlDeviceGetProcessUtilization(handle, since)
        except pynvml.NVMLError_NotFound:
            return {}  # no process used the GPU since the last read
        except _ABSENT:
            return None
        except NVMLError as err:
            if err.value == pynvml.NVML_SUCCESS:  # pynvml raises this when the first call counts no samples
                return {}
            self._warn(gpu_uuid, "process_utilization_failed", err)
            return None
        newest: dict[int, object] = {}
        for row in rows:
            if row.pid not in newest or row.timeStamp > newest[row.pid].timeStamp:
                newest[row.pid] = row
        if newest:
            self._seen_us[gpu_uuid] = max(since, *(r.timeStamp for r in newest.values()))
        return {pid: (r.smUtil, r.memUtil) for pid, r in newest.items()
                if r.smUtil <= 100 and r.memUtil <= 100}  # drivers have returned garbage: leave it out

    # ---- lifetime -------------------------------------------------------------------------------
    def retain(self, keys: set[str]) -> None:
        """Forget the devices not in ``keys`` (gone, failed, or re-partitioned): a window never spans a gap."""
        for key in set(self._samples) - keys:
            self._drop(key)
        for key in set(self._seen_us) - keys:
            del self._seen_us[key]

    def close(self) -> None:
        """Free every GPM sample (call before nvmlShutdown)."""
        self.retain(set())

    def _drop(self, key: str) -> None:
        sample = self._samples.pop(key, None)
        if sample is not None:
            try:
                pynvml.nvmlGpmSampleFree(sample)
            except NVMLError:
                pass

    def _warn(self, key: str, what: str, err: NVMLError) -> None:
        reason = str(err)
        if self._warned.get(key + what) != reason:
            self._warned[key + what] = reason
            log.warning(what, device=key, reason=reason)
