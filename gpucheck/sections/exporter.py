"""The exporter: its collector fed two samples of this machine's NVML (as its poller does), every ``DCGM_*``
series it emits set next to what ``nvidia-smi --query-gpu`` says, each with a tolerance; GPM metrics on
Hopper (compute capability 9.x): present, or why not."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.collector import collect_snapshot
from exporter.snapshot import ExporterCounts, GpuReading, Snapshot
from gpucheck.section import CheckContext, SectionReport
from gpucheck.smi import number, query_gpus
from tessera.gpu import GpuInfo, GpuSample
from tessera.nvml import Nvml

TITLE = "Exporter: every DCGM_* series against nvidia-smi --query-gpu"
GPM_SERIES = ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_OCCUPANCY", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
              "DCGM_FI_PROF_DRAM_ACTIVE")
SAMPLE_GAP_S = 1.0  # GPM figures need two samples apart


@dataclass(frozen=True)
class Field:
    """The nvidia-smi field a series is compared with, and how close they must be."""

    smi: str
    tolerance: Callable[[float, dict[str, float]], float]  # (smi value, this GPU's other series) -> allowed gap
    why: str


def _abs(gap: float) -> Callable[[float, dict[str, float]], float]:
    return lambda _v, _s: gap


def _reserved(base: float) -> Callable[[float, dict[str, float]], float]:
    # NVML's v1 memory info counts the driver's reserved memory as used; nvidia-smi's does not
    return lambda _v, series: base + series.get("DCGM_FI_DEV_FB_RESERVED", 0.0)


def _share(part: float, floor: float) -> Callable[[float, dict[str, float]], float]:
    return lambda v, _s: max(floor, abs(v) * part)


FIELDS = {
    "DCGM_FI_DEV_GPU_TEMP": Field("temperature.gpu", _abs(3), "±3 °C (read a moment apart)"),
    "DCGM_FI_DEV_MEMORY_TEMP": Field("temperature.memory", _abs(3), "±3 °C"),
    "DCGM_FI_DEV_POWER_USAGE": Field("power.draw", _share(0.2, 25), "±20 % or 25 W (power moves fast)"),
    "DCGM_FI_DEV_GPU_UTIL": Field("utilization.gpu", _abs(20), "±20 points"),
    "DCGM_FI_DEV_MEM_COPY_UTIL": Field("utilization.memory", _abs(20), "±20 points"),
    "DCGM_FI_DEV_ENC_UTIL": Field("utilization.encoder", _abs(20), "±20 points"),
    "DCGM_FI_DEV_DEC_UTIL": Field("utilization.decoder", _abs(20), "±20 points"),
    "DCGM_FI_DEV_FB_USED": Field("memory.used", _reserved(64), "±64 MiB plus the reserved memory"),
    "DCGM_FI_DEV_FB_FREE": Field("memory.free", _reserved(64), "±64 MiB plus the reserved memory"),
    "DCGM_FI_DEV_FB_RESERVED": Field("memory.reserved", _abs(1), "±1 MiB"),
    "DCGM_FI_DEV_SM_CLOCK": Field("clocks.sm", _share(0.15, 30), "±15 % or 30 MHz (idle clocks move)"),
    "DCGM_FI_DEV_MEM_CLOCK": Field("clocks.mem", _share(0.05, 10), "±5 % or 10 MHz"),
}
# Counters that must agree exactly: series -> nvidia-smi field
EXACT = {
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": "ecc.errors.corrected.volatile.total",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "ecc.errors.uncorrected.volatile.total",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": "ecc.errors.corrected.aggregate.total",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": "ecc.errors.uncorrected.aggregate.total",
    "DCGM_FI_DEV_RETIRED_SBE": "retired_pages.sbe",
    "DCGM_FI_DEV_RETIRED_DBE": "retired_pages.dbe",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "remapped_rows.correctable",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "remapped_rows.uncorrectable",
}
FIELDS.update((series, Field(smi, _abs(0), "equal")) for series, smi in EXACT.items())


def snapshot(infos: list[GpuInfo], samples: list[GpuSample], driver: str) -> Snapshot:
    """A snapshot as the exporter's poller builds one, without pods (no kubelet here)."""
    now = time.time()
    readings = tuple(GpuReading(info, sample, now, False) for info, sample in zip(infos, samples))
    return Snapshot(socket.gethostname(), now, 0.0, readings, (), {}, {}, False, ExporterCounts(1), driver)


def dcgm_series(snap: Snapshot) -> dict[str, dict[str, float]]:
    """GPU UUID -> DCGM series name -> value (GPU-level series only; MIG ones carry GPU_I_ID)."""
    found: dict[str, dict[str, float]] = {}
    for family in collect_snapshot(snap):
        for s in family.samples:
            if s.name.startswith("DCGM_") and "GPU_I_ID" not in s.labels:
                found.setdefault(s.labels.get("UUID", ""), {})[s.name.removesuffix("_total")] = s.value
    return found


def _compare(report: SectionReport, index: int, series: dict[str, float], smi: dict[str, str],
             refused: dict[str, str]) -> None:
    for name, value in sorted(series.items()):
        f = FIELDS.get(name)
        check = f"GPU {index} {name}"
        if f is None:
            report.not_checked(check, "no nvidia-smi --query-gpu field to compare with", exporter=value)
        elif f.smi in refused:
            report.not_checked(check, f"nvidia-smi refused {f.smi}: {refused[f.smi]}", exporter=value)
        elif number(smi.get(f.smi)) is None:
            report.not_checked(check, f"nvidia-smi says {smi.get(f.smi)!r} for {f.smi}", exporter=value)
        else:
            witness = number(smi.get(f.smi))
            gap, allowed = abs(value - witness), f.tolerance(witness, series)
            report.expect(check, gap <= allowed, f"exporter {value:g}, nvidia-smi {f.smi} {witness:g}: "
                          f"{f.why}", exporter=value, smi=witness, allowed=allowed)


def _gpm(report: SectionReport, info: GpuInfo, series: dict[str, float]) -> None:
    present = [s for s in GPM_SERIES if s in series]
    name = f"GPU {info.index} GPM metrics"
    if info.compute_capability and info.compute_capability[0] >= 9:
        report.expect(name, bool(present), f"emitted {present}" if present else
                      f"none emitted on compute capability {info.compute_capability} after two samples "
                      f"{SAMPLE_GAP_S} s apart: the driver's GPM support query said no or sampling failed (the "
                      "check's log on stderr has the NVML error)")
    else:
        report.not_checked(name, f"compute capability {info.compute_capability}: GPM is Hopper on (emitted {present})")


def run(ctx: CheckContext) -> SectionReport:
    """The exporter section."""
    report = SectionReport(TITLE)
    with Nvml() as nvml:
        infos = nvml.read_gpus()
        nvml.sample_gpus()  # the first GPM sample; figures come from the second
        time.sleep(SAMPLE_GAP_S)
        samples = nvml.sample_gpus()
        snap = snapshot(infos, samples, nvml.driver_version())
        smi, refused = query_gpus(ctx.smi, sorted({f.smi for f in FIELDS.values()}),
                                  timeout_s=min(30.0, ctx.budget_s / 2))
        series = dcgm_series(snap)
        for info in infos:
            mine = series.get(info.uuid, {})
            report.expect(f"GPU {info.index} DCGM series emitted", bool(mine), f"{len(mine)} series", count=len(mine))
            _compare(report, info.index, mine, smi.get(info.uuid, {}), refused)
            _gpm(report, info, mine)
    return report
