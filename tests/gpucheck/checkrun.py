"""Running ``python -m gpucheck`` as a user does, with its scratch folder under the test's own folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CheckRun:
    """One run: exit status, the JSON report, the markdown report."""

    rc: int
    report: dict
    markdown: str
    stderr: str

    def checks(self, section: str) -> dict[str, dict]:
        """A section's checks by name."""
        (found,) = [s for s in self.report["sections"] if s["name"] == section]
        return {c["name"]: c for c in found["checks"]}


def run_check(tmp: Path, *args: str, env: dict[str, str] | None = None) -> CheckRun:
    """Run the check with ``args``; its scratch folder (TMPDIR) lies under ``tmp/scratch``."""
    out, scratch = tmp / "out", tmp / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch), **(env or {})}
    full_env.pop("TESSERA_FAKE_NVML", None)
    proc = subprocess.run([sys.executable, "-m", "gpucheck", "--out", str(out), *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=240)
    report = json.loads((out / "gpu-check.json").read_text())
    return CheckRun(proc.returncode, report, (out / "gpu-check.md").read_text(), proc.stderr)
