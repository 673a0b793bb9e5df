"""The hook: its grant and device checks (hook/devices.py) against this machine's ``/dev/nvidia*`` nodes,
on container specs built from the nodes' real major and minor numbers and a grant Allocate signed; and
which container runtimes (runc, crun) are here, so what a container start could have shown."""

from __future__ import annotations

import shutil

from gpucheck.nodes import node_numbers
from gpucheck.plugin import PluginOnNode
from gpucheck.section import CheckContext, SectionReport
from hook.devices import check_granted, check_present, check_ungranted, gpu_mounts, read_majors
from hook.errors import Refused
from tessera import RESOURCE_GPU
from tessera.grant import verify
from tessera.hostdevices import host_device_path
from tessera.nvml import Nvml

TITLE = "Hook: grant and device checks against the real /dev/nvidia* nodes"
WHO = "gpucheck container"


def _spec_devices(root: str, paths: list[str]) -> tuple[list[dict], list[str]]:
    """``linux.devices`` entries for ``paths`` with the numbers the nodes have here; and the paths missing."""
    devices, missing = [], []
    for path in paths:
        found = node_numbers(root, path)
        if isinstance(found, str):
            missing.append(found)
        else:
            devices.append({"path": path, "type": "c", "major": found[0], "minor": found[1]})
    return devices, missing


def _refuses(fn, *args) -> str | None:
    try:
        fn(*args)
    except Refused as err:
        return str(err)
    return None


def _runtimes(report: SectionReport) -> None:
    found = {name: shutil.which(name) for name in ("runc", "crun")}
    here = {k: v for k, v in found.items() if v}
    report.not_checked("a container started through the hook",
                       (f"{', '.join(f'{k} at {v}' for k, v in here.items())} present, but a container start needs a "
                        "root filesystem and the hook installed in the runtime; not attempted (read-only check)")
                       if here else "neither runc nor crun is on this machine: only the hook's checks on specs ran",
                       **{k: bool(v) for k, v in found.items()})


def run(ctx: CheckContext) -> SectionReport:
    """The hook section."""
    report = SectionReport(TITLE)
    _runtimes(report)
    if ctx.device_root is None:
        report.not_checked("hook device checks", "no device nodes here (the dry run could not make them: not root)")
        return report
    majors = read_majors(ctx.proc_devices)
    report.expect("NVIDIA majors from /proc/devices", bool(majors.uvm),
                  f"{ctx.proc_devices}: nvidia majors {sorted(majors.all)}, nvidia-uvm {sorted(majors.uvm)}")
    with Nvml() as nvml:
        gpus = [g for g in nvml.read_gpus() if g.healthy and not g.mig_enabled]
    if not gpus:
        report.not_checked("hook device checks", "no GPU outside MIG mode")
        return report
    plugin = PluginOnNode(gpus, "exclusive", ctx.device_root, str(ctx.work / "pipe"), str(ctx.work / "shm"))
    gpu = gpus[0]
    answer = plugin.allocate(RESOURCE_GPU, plugin.ids(RESOURCE_GPU, gpu.uuid, 1))
    (grant,) = [verify(k, v, plugin.key) for k, v in answer.annotations.items()]
    granted = set(grant.paths)
    devices, missing = _spec_devices(ctx.device_root, list(grant.paths))
    report.expect("granted nodes exist", not missing, f"{grant.paths}" + (f"; missing {missing}" if missing else ""))
    if missing:
        report.not_checked("hook device checks", "the granted nodes are missing here, so no spec can carry them")
        return report
    why = _refuses(check_granted, devices, [], [], majors, granted, WHO)
    report.expect("granted container accepted", why is None,
                  why or f"{[(d['path'], d['major'], d['minor']) for d in devices]} all covered by the grant")
    other = {"path": f"/dev/nvidia{(gpu.minor_number or 0) + 1}", "type": "c", "major": 195,
             "minor": (gpu.minor_number or 0) + 1}
    why = _refuses(check_granted, [*devices, other], [], [], majors, granted, WHO)
    report.expect("another GPU's node refused", why is not None, why or f"{other['path']} was let through")
    rule = {"allow": True, "type": "c", "major": 195, "minor": other["minor"], "access": "rwm"}
    why = _refuses(check_granted, devices, [rule], [], majors, granted, WHO)
    report.expect("a device rule for another GPU refused", why is not None, why or "the rule was let through")
    why = _refuses(check_ungranted, devices, [], [], majors, WHO)
    report.expect("no grant, GPU nodes refused", why is not None, why or "an ungranted spec with GPU nodes passed")
    gpu_node = next((d for d in devices if d["major"] == 195 and d["minor"] != 255), None)
    if gpu_node is not None:
        why = _refuses(check_present, [d for d in devices if d is not gpu_node], granted, WHO)
        report.expect("a grant whose node the spec lacks refused", why is not None, why or "let through")
        host = host_device_path(ctx.device_root, gpu_node["path"])
        mounted = gpu_mounts([{"type": "bind", "source": host, "destination": "/x"}], majors)
        report.expect("a bind mount of the GPU node is seen", mounted == [host], f"gpu_mounts found {mounted}")
    report.not_checked("device cgroup tightening", "writes to a container's device cgroup: no container here")
    return report
