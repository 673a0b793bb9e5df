"""A fake NVML: simulated GPU nodes behind pynvml's own functions, with fault injection.

``install(description)`` replaces pynvml's functions so that code calling pynvml (Tessera's
``tessera.nvml`` layer) runs unchanged on a fake node; ``FaultInjector`` breaks GPUs and sets
workloads on that node from any process.
"""

from tessera.fakenvml.catalog import CATALOG, GpuModel, MigProfile, find_model
from tessera.fakenvml.control import CONTROL_DIR_ENV, FaultInjector, control_path_for
from tessera.fakenvml.description import (
    DescriptionError, GpuSpec, MigSpec, NodeDescription, load_description, parse_description,
)
from tessera.fakenvml.install import install, installed_node, uninstall
from tessera.fakenvml.placement import MigLayoutError
from tessera.fakenvml.shipped import resolve_node_description, shipped_node_descriptions

__all__ = [
    "CATALOG", "CONTROL_DIR_ENV", "DescriptionError", "FaultInjector", "GpuModel", "GpuSpec", "MigLayoutError",
    "MigProfile", "MigSpec", "NodeDescription", "control_path_for", "find_model", "install", "installed_node",
    "load_description", "parse_description", "resolve_node_description", "shipped_node_descriptions", "uninstall",
]
