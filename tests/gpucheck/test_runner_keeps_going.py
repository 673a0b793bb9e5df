"""A section that raises is one failed check with the exception's last line; the sections after it run."""

from __future__ import annotations

from gpucheck import runner
from gpucheck.section import CheckContext, Outcome, SectionReport


def test_a_raising_section_fails_alone(tmp_path, monkeypatch):
    def fake_section(name):
        def run(ctx):
            if name == "health":
                raise ValueError("NVML said no\nsecond line")
            report = SectionReport(name)
            report.passed("fine", "ran")
            return report
        return run

    monkeypatch.setattr(runner, "_section", fake_section)
    reports = dict(runner.run_sections(["inventory", "health", "hook"], CheckContext(tmp_path, tmp_path),
                                       lambda _: None))
    assert reports["inventory"].outcome is Outcome.PASSED and reports["hook"].outcome is Outcome.PASSED
    (check,) = reports["health"].checks
    assert check.outcome is Outcome.FAILED
    assert check.detail.startswith("raised: ValueError: NVML said no")
