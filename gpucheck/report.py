"""The check's report: ``gpu-check.md`` for people and ``gpu-check.json`` for tools, with the machine
(card, driver, CUDA) at the top, every section's checks (outcome, detail, numbers) and a summary line."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpucheck.section import Outcome, SectionReport

__all__ = ["Machine", "summary", "write_reports"]


@dataclass(frozen=True)
class Machine:
    """What the check ran on."""

    cards: list[str] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    mode: str = "real"  # "real", "dry run (fake NVML, stand-in nvidia-smi)", "no NVIDIA driver"
    notes: list[str] = field(default_factory=list)


def counts(sections: list[tuple[str, SectionReport]]) -> Counter:
    """Checks per outcome over every section."""
    return Counter(c.outcome for _, report in sections for c in report.checks)


def summary(sections: list[tuple[str, SectionReport]]) -> str:
    """One line: how many checks passed, failed, were not checked."""
    n = counts(sections)
    verdict = "FAILED" if n[Outcome.FAILED] else "passed" if n[Outcome.PASSED] else "nothing could be checked here"
    return (f"{verdict}: {n[Outcome.PASSED]} passed, {n[Outcome.FAILED]} failed, "
            f"{n[Outcome.NOT_CHECKED]} not checked, in {len(sections)} sections")


def _as_json(machine: Machine, sections: list[tuple[str, SectionReport]]) -> dict[str, Any]:
    return {
        "machine": {"cards": machine.cards, "driver_version": machine.driver_version,
                    "cuda_version": machine.cuda_version, "mode": machine.mode, "notes": machine.notes},
        "summary": summary(sections),
        "failed": counts(sections)[Outcome.FAILED] > 0,
        "sections": [{"name": name, "title": r.title, "outcome": r.outcome.value, "seconds": r.seconds,
                      "checks": [{"name": c.name, "outcome": c.outcome.value, "detail": c.detail,
                                  "numbers": c.numbers} for c in r.checks]} for name, r in sections],
    }


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _as_markdown(machine: Machine, sections: list[tuple[str, SectionReport]]) -> str:
    lines = ["# Tessera on a real GPU: the check's report", "",
             f"- Card: {', '.join(machine.cards) or 'none seen'}",
             f"- Driver: {machine.driver_version or 'unknown'}; CUDA: {machine.cuda_version or 'unknown'}",
             f"- Ran as: {machine.mode}", *[f"- {note}" for note in machine.notes], "",
             f"**{summary(sections)}**", ""]
    for name, report in sections:
        took = f", {report.seconds} s" if report.seconds is not None else ""
        lines += [f"## {report.title} ({name}: {report.outcome.value}{took})", "",
                  "| check | outcome | detail | numbers |", "|---|---|---|---|"]
        for c in report.checks:
            numbers = ", ".join(f"{k}={v}" for k, v in c.numbers.items())
            lines.append(f"| {_cell(c.name)} | {c.outcome.value} | {_cell(c.detail)} | {_cell(numbers)} |")
        lines.append("")
    return "\n".join(lines)


def write_reports(out: Path, machine: Machine, sections: list[tuple[str, SectionReport]]) -> tuple[Path, Path]:
    """Write ``gpu-check.md`` and ``gpu-check.json`` under ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "gpu-check.md", out / "gpu-check.json"
    md.write_text(_as_markdown(machine, sections), encoding="utf-8")
    js.write_text(json.dumps(_as_json(machine, sections), indent=2, default=str) + "\n", encoding="utf-8")
    return md, js
