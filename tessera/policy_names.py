"""The placement policy names: the words the config (``extender.policy``), the pod annotation
(``tessera.io/policy``) and the extender share. Written once here, in the core, so the config can check
them without knowing the extender; ``extender.placement.policies`` scores exactly these."""

from __future__ import annotations

POLICIES = ("fragmentation", "binpack", "spread", "binpack-gpu", "spread-gpu", "spread-workload",
            "best-fit", "random", "fgd")
DEFAULT_POLICY = "fragmentation"
