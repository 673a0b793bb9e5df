"""Health: the NVML event set registering for Xid and ECC events on this driver (no Xid can be injected on
a real card: what registration returned is the finding) and one short wait returning without error."""

from __future__ import annotations

import traceback

from gpucheck.section import CheckContext, SectionReport
from tessera.nvml import WATCHED_EVENTS, Nvml

TITLE = "Health: NVML event registration for Xid and ECC events"
WAIT_S = 0.5
XID_BIT = 0x8  # nvmlEventTypeXidCriticalError
EVENT_BITS = {XID_BIT: "xid", 0x1: "ecc_single_bit", 0x2: "ecc_double_bit"}  # as pynvml numbers them


def _kinds(mask: int) -> list[str]:
    return [name for bit, name in EVENT_BITS.items() if mask & bit]


def run(ctx: CheckContext) -> SectionReport:
    """The health section."""
    report = SectionReport(TITLE)
    with Nvml() as nvml:
        count = len(nvml.read_gpus())
        try:
            events = nvml.events(WAIT_S)  # registers every readable GPU, then waits
            waited = None
        except Exception as err:  # noqa: BLE001 - the wait's failure is the finding
            events, waited = [], traceback.format_exception_only(type(err), err)[-1].strip()
        registered = nvml.event_registrations()
    for index in range(count):
        got = registered.get(index, "not registered and no reason recorded")
        if isinstance(got, str):
            report.failed(f"GPU {index} registration", f"nvmlDeviceRegisterEvents refused: {got}")
            continue
        report.expect(f"GPU {index} registered for Xid events", bool(got & XID_BIT),
                      f"registered for {_kinds(got) or 'nothing'} of the watched {_kinds(WATCHED_EVENTS)} "
                      f"(mask {got:#x})", mask=got)
    report.expect(f"one {WAIT_S} s wait", waited is None,
                  f"returned {len(events)} events: {[(e.kind, e.xid) for e in events]}" if waited is None
                  else f"the wait failed: {waited}", events=len(events))
    return report
