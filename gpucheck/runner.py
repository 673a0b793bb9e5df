"""Runs the sections one after another, each within its time budget: a section that raises becomes one
failed check with the exception's last line, one that overruns its budget a failed check saying so, and
neither stops the sections after it. A section cleans up after itself (daemons in ``finally``); the
runner removes the scratch folder at the end."""

from __future__ import annotations

import importlib
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace

from gpucheck.section import CheckContext, SectionReport
from tessera.log import get_logger

__all__ = ["BUDGETS_S", "run_sections"]

log = get_logger("gpucheck")

# Seconds per section on the lent machine; the whole check must finish in under five minutes.
BUDGETS_S = {"inventory": 30.0, "deviceplugin": 30.0, "health": 20.0, "exporter": 30.0, "mps": 150.0, "hook": 20.0}
_LATE_GRACE_S = 30.0  # after its budget, a section still gets this long to finish its cleanup before we move on


def _section(name: str) -> Callable[[CheckContext], SectionReport]:
    return importlib.import_module(f"gpucheck.sections.{name}").run


def _last_line(err: BaseException) -> str:
    lines = traceback.format_exception_only(type(err), err)
    return lines[-1].strip() if lines else repr(err)


def run_one(name: str, ctx: CheckContext) -> SectionReport:
    """One section in a thread of its own, bounded by ``ctx.budget_s``."""
    result: list[SectionReport] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_section(name)(ctx))
        except BaseException as err:  # noqa: BLE001 - a section's failure is reported, never raised
            failure.append(err)
            log.warning("gpucheck_section_raised", section=name, error=_last_line(err),
                        traceback=traceback.format_exc())

    started = time.monotonic()
    thread = threading.Thread(target=target, name=f"gpucheck-{name}", daemon=True)
    thread.start()
    thread.join(ctx.budget_s)
    late = thread.is_alive()
    if late:
        thread.join(_LATE_GRACE_S)
    took = round(time.monotonic() - started, 2)
    if result and not late:
        report = result[0]
    else:
        report = result[0] if result else SectionReport(_title(name))
        if failure:
            report.failed(f"{name} section", f"raised: {_last_line(failure[0])}")
        elif late:
            report.failed(f"{name} section", f"ran past its {ctx.budget_s:.0f} s budget"
                          + ("" if result else "; what it had checked is lost"))
    report.seconds = took
    log.info("gpucheck_section_done", section=name, outcome=report.outcome.value, seconds=took)
    return report


def run_sections(names: list[str], ctx: CheckContext,
                 skip: Callable[[str], str | None]) -> list[tuple[str, SectionReport]]:
    """Every section in ``names`` in order; ``skip(name)`` gives a reason to record it not checked instead."""
    reports = []
    for name in names:
        reason = skip(name)
        if reason is not None:
            report = SectionReport(_title(name))
            report.not_checked(name, reason)
        else:
            section_ctx = replace(ctx, work=ctx.work / name, budget_s=BUDGETS_S.get(name, 60.0))
            section_ctx.work.mkdir(parents=True, exist_ok=True)
            report = run_one(name, section_ctx)
        reports.append((name, report))
    return reports


def _title(name: str) -> str:
    return getattr(importlib.import_module(f"gpucheck.sections.{name}"), "TITLE", name)
