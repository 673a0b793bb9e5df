"""Health: the NVML event set registering for Xid and ECC events on this driver (no Xid can be injected on
a real card: what registration returned is the finding) and one short wait returning without error."""

from __future__ import annotations

import pynvml

from gpucheck.section import CheckContext, SectionReport
from tessera.nvml import WATCHED_EVENTS, Nvml, error_reason

TITLE = "Health: NVML event registration for Xid and ECC events"
WAIT_S = 0.5
_NAMES = {pynvml.nvmlEventTypeXidCriticalError: "xid", pynvml.nvmlEventTypeSingleBitEccError: "ecc_single_bit",
          pynvml.nvmlEventTypeDoubleBitEccError: "ecc_double_bit"}


def _kinds(mask: int) -> list[str]:
    return [name for bit, name in _NAMES.items() if mask & bit]


def run(ctx: CheckContext) -> SectionReport:
    """The health section."""
    report = SectionReport(TITLE)
    with Nvml() as nvml:
        count = pynvml.nvmlDeviceGetCount()
        supported: dict[int, int | str] = {}
        for index in range(count):
            try:
                supported[index] = pynvml.nvmlDeviceGetSupportedEventTypes(pynvml.nvmlDeviceGetHandleByIndex(index))
            except pynvml.NVMLError as err:
                supported[index] = error_reason(err)
        try:
            events = nvml.events(WAIT_S)  # registers every readable GPU, then waits
            waited = None
        except pynvml.NVMLError as err:
            events, waited = [], error_reason(err)
        refused = dict(nvml._register_failed)  # what registration answered per GPU (the layer keeps it)
    for index, mask in supported.items():
        if isinstance(mask, str):
            report.failed(f"GPU {index} supported event types", f"NVML refused: {mask}")
            continue
        kinds = _kinds(mask & WATCHED_EVENTS)
        report.expect(f"GPU {index} supports Xid events", "xid" in kinds,
                      f"supported of the watched kinds: {kinds or 'none'} (mask {mask:#x})", mask=mask)
        if index in refused:
            report.failed(f"GPU {index} registration", f"nvmlDeviceRegisterEvents refused: {refused[index]}")
        else:
            report.passed(f"GPU {index} registration", f"registered for {kinds}")
    report.expect(f"one {WAIT_S} s wait", waited is None,
                  f"returned {len(events)} events: {[(e.kind, e.xid) for e in events]}" if waited is None
                  else f"the wait failed: {waited}", events=len(events))
    return report
