"""The sections of the GPU check, one module each, each ``run(ctx) -> SectionReport``, in report order."""

from __future__ import annotations

SECTION_NAMES = ("inventory", "deviceplugin", "health", "exporter", "mps", "hook")

__all__ = ["SECTION_NAMES"]
