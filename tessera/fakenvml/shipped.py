"""The node descriptions shipped with Tessera (``tessera/nodes/*.yaml``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_node_descriptions() -> dict[str, Path]:
    """Every shipped node description by name (file name without ``.yaml``): ``a100-80gb-mig``, ..."""
    folder = Path(str(resources.files("tessera") / "nodes"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_node_description(value: str) -> Path:
    """A description file path, or the name of a shipped one (``a100-80gb-mig``); ValueError otherwise."""
    path = Path(value)
    if path.exists():
        return path
    shipped = shipped_node_descriptions()
    if value in shipped:
        return shipped[value]
    raise ValueError(f"{value}: no such file, and no shipped node description by that name "
                     f"(shipped: {', '.join(shipped)})")
