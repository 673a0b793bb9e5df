"""The check of Tessera on a real NVIDIA GPU: one command (``scripts/gpu-check.sh``) that reads the card
through every layer Tessera puts on a node (NVML inventory, device nodes, the device plugin's answers,
health events, the exporter, MPS, the hook) and writes a report of what passed, what failed and what
could not be checked there. Read-only on the card: it never changes MIG layout, clocks, compute mode,
persistence or ECC, never resets it, and stops every daemon it starts.

Without an NVIDIA driver every GPU section says so and the check exits 0; ``--dry-run`` runs the same
sections against Tessera's fake NVML so the sections themselves are tested on CPU machines.
"""

from gpucheck.section import Check, CheckContext, Outcome, SectionReport

__all__ = ["Check", "CheckContext", "Outcome", "SectionReport"]
