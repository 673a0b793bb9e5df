"""NVIDIA k8s-device-plugin's config file (its ``version: v1``) rewritten as Tessera's.

What carries over becomes keys of Tessera's ``deviceplugin`` section; what does not, or what Tessera
does differently (above all the resource names pods ask for), becomes a comment line that says what
Tessera does instead, so an admin reads every difference once, at conversion time.

NVIDIA's format, as its README and ``api/config/v1`` document it: ``flags`` (``migStrategy``,
``failOnInitError``, ``nvidiaDriverRoot``, ``plugin.{passDeviceSpecs,deviceListStrategy,
deviceIDStrategy}``, ``gfd``), ``resources`` (renaming patterns) and ``sharing.timeSlicing`` or
``sharing.mps`` (``renameByDefault``, ``failRequestsGreaterThanOne``, ``resources[]`` with ``name``,
``replicas``, ``rename`` and ``devices``: ``all``, a count, or GPU indices, UUIDs or MIG references).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from tessera.config.schema import shown
from tessera.config.v1 import CONFIG_VERSION

RESOURCE_GPU = "nvidia.com/gpu"
MAX_REPLICAS = 64  # deviceplugin.timeslice_replicas' maximum
HEADER = "# Tessera config converted from NVIDIA k8s-device-plugin's config by `tessera config convert`."


class NvidiaConfigError(ValueError):
    """A document that is not NVIDIA's device plugin config v1, or one its own plugin would refuse."""


@dataclass
class Conversion:
    """Tessera's config (only the keys that differ from the defaults) and the lines for the admin."""

    deviceplugin: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)        # carried over, but Tessera behaves differently
    not_carried: list[str] = field(default_factory=list)  # no Tessera equivalent: what to do instead

    def document(self) -> dict[str, Any]:
        """The Tessera config document."""
        doc: dict[str, Any] = {"version": CONFIG_VERSION}
        if self.deviceplugin:
            doc["deviceplugin"] = self.deviceplugin
        return doc

    def render(self) -> str:
        """The config file as written to stdout: the comment lines, then the YAML."""
        lines = [HEADER]
        lines += [f"# note: {n}" for n in self.notes]
        lines += [f"# not carried over: {n}" for n in self.not_carried]
        return "\n".join(lines) + "\n" + yaml.safe_dump(self.document(), sort_keys=False, default_flow_style=False)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NvidiaConfigError(f"{where}: expected a mapping, got {shown(value)}")
    return value


def _mig_strategy(value: Any, out: Conversion) -> None:
    if value == "none":
        out.notes.append("flags.migStrategy none: a GPU with MIG enabled in the driver is always served as its MIG "
                         "instances (nvidia.com/mig-<profile>) in Tessera; GPUs without MIG are served whole as "
                         "before")
    elif value == "mixed":
        out.notes.append("flags.migStrategy mixed: Tessera serves each MIG instance as nvidia.com/mig-<profile>, the "
                         "names mixed gives (e.g. nvidia.com/mig-1g.10gb), with no setting: a GPU with MIG enabled "
                         "in the driver is always in mode mig; pod specs stay as they are")
    elif value == "single":
        out.notes.append("flags.migStrategy single: pod specs that ask nvidia.com/gpu for a MIG instance must ask "
                         "nvidia.com/mig-<profile> instead (e.g. nvidia.com/mig-1g.10gb: 1, the profile the nodes "
                         "are laid out with). Tessera serves MIG instances only under their profile's name: "
                         "nvidia.com/gpu is always one whole GPU, the unit its scheduler, quota and fragmentation "
                         "figures count in, so one name never means two sizes on one cluster")
    else:
        out.not_carried.append(f"flags.migStrategy {shown(value)} (NVIDIA's plugin knows none, single and mixed)")


def _fail_on_init_error(value: Any, out: Conversion) -> None:
    if value is False:
        out.not_carried.append("flags.failOnInitError false: Tessera's device plugin never waits silently; where "
                               "NVML cannot start it stops with the reason. deploy/'s DaemonSet runs only on nodes "
                               "labelled feature.node.kubernetes.io/pci-10de.present or nvidia.com/gpu.present, so "
                               "nodes without GPUs do not run it")
    elif value is not True:
        out.not_carried.append(f"flags.failOnInitError {shown(value)} (NVIDIA's plugin takes true or false)")


def _device_list_strategy(value: Any, out: Conversion) -> None:
    strategies = value if isinstance(value, list) else [s.strip() for s in str(value).split(",")]
    if any(str(s).startswith("cdi-") for s in strategies):
        out.deviceplugin["device_list_strategy"] = "cdi"
        out.notes.append(f"flags.plugin.deviceListStrategy {shown(value)}: Tessera's Allocate answers CDI device "
                         "names (device_list_strategy: cdi); the hook still checks each container's grant")
    else:
        out.notes.append(f"flags.plugin.deviceListStrategy {shown(value)}: Tessera's Allocate hands over the granted "
                         "device nodes themselves (device_list_strategy: device-nodes), not NVIDIA_VISIBLE_DEVICES "
                         "or volume mounts for NVIDIA's runtime to read")


def _plugin_flags(plugin: dict, out: Conversion) -> None:
    for key, value in plugin.items():
        if key == "deviceListStrategy":
            _device_list_strategy(value, out)
        elif key == "passDeviceSpecs":
            if value is True:
                out.notes.append("flags.plugin.passDeviceSpecs true: Tessera always passes the device nodes in "
                                 "Allocate, which is what the CPU manager needs")
        elif key == "deviceIDStrategy":
            if value != "uuid":
                out.not_carried.append(f"flags.plugin.deviceIDStrategy {shown(value)}: Tessera's device IDs are "
                                       "always UUIDs (or <UUID>::<kind>::<n> for shares)")
        else:
            out.not_carried.append(f"flags.plugin.{key} (no Tessera equivalent)")


def _flags(flags: dict, out: Conversion) -> None:
    for key, value in flags.items():
        if key == "migStrategy":
            _mig_strategy(value, out)
        elif key == "failOnInitError":
            _fail_on_init_error(value, out)
        elif key == "nvidiaDriverRoot":
            if value not in ("/", None):
                out.not_carried.append(f"flags.nvidiaDriverRoot {shown(value)}: Tessera finds the driver's libraries "
                                       "through NVML in its own image; if the /dev/nvidia* nodes live under that "
                                       "root rather than /, set deviceplugin.device_root to it")
        elif key == "plugin":
            _plugin_flags(_mapping(value, "flags.plugin"), out)
        elif key == "gfd":
            out.not_carried.append("flags.gfd (GPU feature discovery's settings: Tessera writes its own node labels)")
        else:
            out.not_carried.append(f"flags.{key} (no Tessera equivalent)")


def _gpu_indices(devices: Any, where: str, out: Conversion) -> list[int] | None:
    """The GPU indices a sharing resource names; None for all GPUs (``all`` or no ``devices``); an empty
    list where they cannot be carried over (a count, UUIDs, MIG references), with its line."""
    if devices in (None, "all"):
        return None
    if isinstance(devices, list) and all(isinstance(d, int) or (isinstance(d, str) and d.isdigit())
                                         for d in devices):
        return [int(d) for d in devices]
    out.not_carried.append(f"{where}.devices {shown(devices)}: Tessera gives a mode per GPU index "
                           "(deviceplugin.gpu_modes), not per count, UUID or MIG instance; list the GPU indices "
                           "there by hand")
    return []


def _set_mode(mode: str, indices: list[int] | None, out: Conversion) -> None:
    if indices is None:
        out.deviceplugin["default_mode"] = mode
    else:
        modes = out.deviceplugin.setdefault("gpu_modes", {})
        modes.update({i: mode for i in indices})


def _shared_resources(sharing: dict, where: str, out: Conversion) -> list[tuple[str, int, list[int] | None]]:
    """(where, replicas, GPU indices) of each ``nvidia.com/gpu`` resource; the others get their line."""
    resources = sharing.get("resources") or []
    if not isinstance(resources, list):
        raise NvidiaConfigError(f"{where}.resources: expected a list, got {shown(resources)}")
    kept = []
    for i, resource in enumerate(resources):
        item = f"{where}.resources[{i}]"
        resource = _mapping(resource, item)
        name, replicas = resource.get("name"), resource.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise NvidiaConfigError(f"{item}.replicas: {shown(replicas)} is not a whole number of at least 1")
        if name != RESOURCE_GPU:
            out.not_carried.append(f"{item} {shown(name)}: Tessera shares only whole GPUs (nvidia.com/gpu); a MIG "
                                   "instance is one container's")
            continue
        if resource.get("rename"):
            out.not_carried.append(f"{item}.rename {shown(resource['rename'])}: Tessera's resource names are fixed")
        indices = _gpu_indices(resource.get("devices"), item, out)
        if indices != []:
            kept.append((item, replicas, indices))
    return kept


def _time_slicing(sharing: dict, out: Conversion) -> None:
    where = "sharing.timeSlicing"
    resources = _shared_resources(sharing, where, out)
    for item, replicas, indices in resources:
        _set_mode("timeslice", indices, out)
    if resources:
        replicas = max(r for _, r, _ in resources)
        if len({r for _, r, _ in resources}) > 1:
            out.notes.append(f"{where}: Tessera has one replica count per node; the largest, {replicas}, is kept")
        if replicas > MAX_REPLICAS:
            out.notes.append(f"{where} replicas {replicas}: Tessera's most is {MAX_REPLICAS}, kept instead")
            replicas = MAX_REPLICAS
        out.deviceplugin["timeslice_replicas"] = replicas
    if sharing.get("renameByDefault") is True:
        out.notes.append(f"{where}.renameByDefault true: Tessera names a time-sliced replica nvidia.com/gpu.shared, "
                         "the name renameByDefault gives; pod specs stay as they are")
    elif resources:
        out.notes.append(f"{where}.renameByDefault false: pods that asked nvidia.com/gpu for a replica must ask "
                         "nvidia.com/gpu.shared instead; Tessera always names time-sliced replicas "
                         "nvidia.com/gpu.shared (what renameByDefault true gives), and nvidia.com/gpu is always one "
                         "whole GPU of its own")
    if sharing.get("failRequestsGreaterThanOne") is True:
        out.not_carried.append(f"{where}.failRequestsGreaterThanOne true: Tessera has no such switch; a container "
                               "may ask nvidia.com/gpu.shared above 1 and gets that many replicas (turns on the GPU "
                               "shared with others, never more compute)")


def _mps(sharing: dict, out: Conversion) -> None:
    where = "sharing.mps"
    for item, replicas, indices in _shared_resources(sharing, where, out):
        _set_mode("mps", indices, out)
        share = 100 // replicas
        out.notes.append(f"{item} replicas {replicas}: instead of nvidia.com/gpu: 1 for one 1/{replicas} replica, "
                         f"a pod asks its own share: nvidia.com/mps-core: {share} (percent of the GPU's SMs; the "
                         "webhook adds nvidia.com/mps-memory, the same fraction of its memory in GiB); how many pods "
                         "share a GPU follows from their shares, so there is no replicas key")
    if "renameByDefault" in sharing:
        out.notes.append(f"{where}.renameByDefault: Tessera's MPS shares are nvidia.com/mps-core and "
                         "nvidia.com/mps-memory, whichever name NVIDIA's plugin advertised")
    if sharing.get("failRequestsGreaterThanOne") is not None:
        out.notes.append(f"{where}.failRequestsGreaterThanOne: one MPS share comes from one GPU in Tessera; "
                         "nvidia.com/mps-core above 100 asks for whole GPUs in hundreds")


def _sharing(sharing: dict, out: Conversion) -> None:
    time_slicing = _mapping(sharing.get("timeSlicing"), "sharing.timeSlicing")
    mps = _mapping(sharing.get("mps"), "sharing.mps")
    if time_slicing.get("resources") and mps.get("resources"):
        raise NvidiaConfigError("sharing: timeSlicing and mps both have resources; NVIDIA's plugin takes one or the "
                                "other")
    for key in sharing:
        if key not in ("timeSlicing", "mps"):
            out.not_carried.append(f"sharing.{key} (no Tessera equivalent)")
    if time_slicing:
        _time_slicing(time_slicing, out)
    if mps:
        _mps(mps, out)


def convert_nvidia_config(data: Any) -> Conversion:
    """Tessera's config for NVIDIA's device plugin config document ``data``; NvidiaConfigError where it is
    not one (no ``version: v1``, not a mapping, a section of the wrong type)."""
    if not isinstance(data, dict):
        raise NvidiaConfigError(f"top level: expected NVIDIA's device plugin config (a mapping with version: v1), "
                                f"got {shown(data)}")
    if data.get("version") != "v1":
        raise NvidiaConfigError(f"version: {shown(data.get('version'))}; NVIDIA's device plugin config has "
                                "version: v1")
    out = Conversion()
    for key, value in data.items():
        if key == "version":
            continue
        if key == "flags":
            _flags(_mapping(value, "flags"), out)
        elif key == "sharing":
            _sharing(_mapping(value, "sharing"), out)
        elif key == "resources":
            out.not_carried.append("resources (NVIDIA's renaming of GPUs and MIG devices by pattern: Tessera's "
                                   "resource names are fixed)")
        else:
            out.not_carried.append(f"{key} (no Tessera equivalent)")
    return out
