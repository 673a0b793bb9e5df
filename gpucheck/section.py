"""What one section of the GPU check answers: named checks, each passed, failed or not checked, with numbers."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Check", "CheckContext", "Outcome", "Section", "SectionReport"]


class Outcome(str, enum.Enum):
    """How one check ended."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_CHECKED = "not checked"  # could not be checked on this machine; ``detail`` says why


@dataclass(frozen=True)
class Check:
    """One thing a user would verify, its outcome, why, and what was measured."""

    name: str
    outcome: Outcome
    detail: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class SectionReport:
    """A section's checks, in the order they ran."""

    title: str
    checks: list[Check] = field(default_factory=list)
    seconds: float | None = None  # how long the section ran (the runner sets it)

    def passed(self, name: str, detail: str = "", **numbers: Any) -> Check:
        """Record a passed check."""
        return self._add(Check(name, Outcome.PASSED, detail, numbers))

    def failed(self, name: str, detail: str, **numbers: Any) -> Check:
        """Record a failed check; ``detail`` says what was expected and what was found."""
        return self._add(Check(name, Outcome.FAILED, detail, numbers))

    def not_checked(self, name: str, why: str, **numbers: Any) -> Check:
        """Record a check that could not run here, with the reason."""
        return self._add(Check(name, Outcome.NOT_CHECKED, why, numbers))

    def expect(self, name: str, ok: bool, detail: str, **numbers: Any) -> Check:
        """Record ``name`` as passed when ``ok``, else failed, with the same detail either way."""
        return self._add(Check(name, Outcome.PASSED if ok else Outcome.FAILED, detail, numbers))

    def _add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @property
    def outcome(self) -> Outcome:
        """Failed if any check failed; passed if any passed; else not checked."""
        outcomes = {c.outcome for c in self.checks}
        if Outcome.FAILED in outcomes:
            return Outcome.FAILED
        return Outcome.PASSED if Outcome.PASSED in outcomes else Outcome.NOT_CHECKED


@dataclass
class CheckContext:
    """What every section is handed.

    ``work`` is a private scratch folder (pipe and log folders, sockets) removed after the run;
    ``dry_run`` means NVML is Tessera's fake (``fake_node`` names its description) and
    ``nvidia-smi`` is the stand-in that prints the fake's state, so no real GPU is touched.
    ``no_driver`` is the reason NVML could not be opened (no NVIDIA driver), or None.
    """

    out: Path
    work: Path
    dry_run: bool = False
    fake_node: str | None = None
    no_driver: str | None = None
    smi: Path | None = None  # the nvidia-smi to compare against (the real one, or the dry run's stand-in)
    budget_s: float = 60.0  # what this section may take; subprocesses it starts get at most this
    device_root: str | None = "/"  # where the device nodes are: "/" on a real machine; None: none to check
    proc_devices: str = "/proc/devices"  # the kernel's list of device majors (the dry run writes its own)
    sysfs_root: str = "/sys"  # where the kernel's PCI devices are (the dry run writes the fake's NUMA nodes)
    mps_control: str | None = None  # nvidia-cuda-mps-control, or the fake one in the dry run; None: missing
    cuda_client: list[str] | None = None  # argv prefix speaking gpucheck/cudaclient.py's protocol; None: none
    cuda_client_kind: str = ""  # "torch", "cupy", or "fake" (the dry run's stand-in clients, no GPU)


Section = Callable[[CheckContext], SectionReport]
