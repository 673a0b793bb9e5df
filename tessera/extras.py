"""Optional extras of the ``tessera`` distribution: whether one is installed, and how to get it."""

from __future__ import annotations

import importlib.util


def missing_pictures() -> str | None:
    """Why PNG pictures cannot be drawn here (the ``demo`` extra's matplotlib is absent), or None."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed: pip install 'tessera[demo]'"
    return None
