"""NVIDIA's mock NVML as the tests use it: the profile each test writes from NVIDIA's H100 profile, the
environment that makes a child process load the mock, and the profile's values in NVML's forms."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20


def h100_profile(mock: Path, minors: list[int], lost: dict[int, dict] | None = None) -> dict:
    """NVIDIA's HGX H100 profile cut to ``len(minors)`` GPUs with these minor numbers (index i gets
    ``minors[i]``: real nodes number device nodes in PCI probe order, not NVML's order), and the GPUs in
    ``lost`` given that failure-injection block (``{"mode": "fallen_off_bus", "xid": {"code": 79}}``)."""
    profile = yaml.safe_load((mock / "configs" / "mock-nvml-config-h100.yaml").read_text())
    devices = profile["devices"][: len(minors)]
    for device, minor in zip(devices, minors):
        device["minor_number"] = minor
    for index, failure in (lost or {}).items():
        devices[index]["failure"] = failure
    profile["devices"] = devices
    return profile


def mock_env(mock: Path, profile_path: Path) -> dict[str, str]:
    """The environment that makes a child process load the mock in place of the driver."""
    return {"LD_LIBRARY_PATH": str(mock / "lib"), "MOCK_NVML_CONFIG": str(profile_path)}


def write_profile(path: Path, profile: dict) -> Path:
    path.write_text(yaml.safe_dump(profile))
    return path


def bus_id(profile_bus: str) -> str:
    """NVML's 8-hex-digit domain form of a profile's ``0000:1A:00.0``."""
    domain, rest = profile_bus.split(":", 1)
    return f"{int(domain, 16):08X}:{rest.upper()}"


def numa_of(profile: dict, profile_bus: str) -> int | None:
    for complex_ in profile.get("pcie_topology", {}).get("root_complexes", []):
        if profile_bus in complex_["devices"]:
            return complex_["numa_node"]
    return None
