"""The device plugin: its resource manager and Allocate answers for each mode (whole, time-sliced, MPS;
MIG only where the card is already in MIG mode, never enabled here) built on this machine's NVML and
called in-process, each answer checked to name the right GPU UUID and the right ``/dev/nvidia<minor>``."""

from __future__ import annotations

from gpucheck.nodes import node_numbers
from gpucheck.plugin import MODE_RESOURCES, Answer, PluginOnNode
from gpucheck.section import CheckContext, SectionReport
from gpucheck.smi import read_log
from tessera import mig_resource_name
from tessera.grant import verify
from tessera.gpu import GpuInfo
from tessera.hostdevices import CONTROL_NODES, host_device_path
from tessera.nvml import Nvml

TITLE = "Device plugin: resource manager and Allocate answers per mode, on this machine's NVML"
MPS_CORE, MPS_MEM_GIB = 50, 8


def _check_answer(report: SectionReport, name: str, answer: Answer, plugin: PluginOnNode, visible: str,
                  minor: int | None, root: str | None) -> None:
    env_visible = answer.envs.get("NVIDIA_VISIBLE_DEVICES")
    report.expect(f"{name}: visible devices", env_visible == visible == answer.envs.get("CUDA_VISIBLE_DEVICES"),
                  f"NVIDIA_VISIBLE_DEVICES {env_visible}, "
                  f"CUDA_VISIBLE_DEVICES {answer.envs.get('CUDA_VISIBLE_DEVICES')}"
                  f", expected {visible}")
    node = f"/dev/nvidia{minor}"
    wanted = [host_device_path(root or "/", p) for p in (node, *CONTROL_NODES)]
    missing = [p for p in wanted if p not in answer.devices]
    report.expect(f"{name}: device nodes", not missing,
                  f"answered {answer.devices}; nvidia-smi's minor {minor} means {node}"
                  + (f"; missing {missing}" if missing else ""))
    if root is not None:
        bad = {p: node_numbers(root, p) for p in (node, *CONTROL_NODES)}
        absent = {p: why for p, why in bad.items() if isinstance(why, str)}
        report.expect(f"{name}: answered nodes exist", not absent,
                      "every node is a character device here" if not absent else f"absent: {absent}")
    grants = [verify(k, v, plugin.key) for k, v in answer.annotations.items()]
    ok = bool(grants) and all(visible in g.uuids and node in g.paths for g in grants)
    report.expect(f"{name}: signed grant", ok, "; ".join(f"{g.resource}: uuids {g.uuids}, paths {g.paths}"
                                                        for g in grants) or "no grant annotation")


def _mode(report: SectionReport, ctx: CheckContext, gpus: list[GpuInfo], minors: dict[str, int | None],
          mode: str) -> None:
    pipe, shm = str(ctx.work / "mps-pipe"), str(ctx.work / "mps-shm")
    plugin = PluginOnNode(gpus, mode, ctx.device_root or "/", pipe, shm)
    report.expect(f"{mode}: every GPU in mode {mode}", set(plugin.rm.active_modes().values()) == {mode},
                  f"active modes {plugin.rm.active_modes()}")
    for gpu in gpus:
        minor = minors.get(gpu.uuid)
        if mode == "mig":
            for mig in gpu.mig_instances:
                resource = mig_resource_name(mig.profile)
                answer = plugin.allocate(resource, plugin.ids(resource, mig.uuid, 1))
                _check_answer(report, f"mig GPU {gpu.index} {mig.profile} {mig.uuid}", answer, plugin, mig.uuid, minor,
                              ctx.device_root)
            continue
        if mode == "mps":
            env, answers = plugin.mps_share(gpu.uuid, MPS_CORE, MPS_MEM_GIB)
            core = next(a for a in answers if any("mps-core" in k for k in a.annotations))
            _check_answer(report, f"mps GPU {gpu.index}", core, plugin, gpu.uuid, minor, ctx.device_root)
            report.expect(f"mps GPU {gpu.index}: share environment",
                          env.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE") == str(MPS_CORE)
                          and env.get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "").endswith(f"={MPS_MEM_GIB}G")
                          and env.get("CUDA_MPS_PIPE_DIRECTORY") == pipe and pipe in core.mounts,
                          f"{ {k: v for k, v in env.items() if k.startswith('CUDA_MPS')} }, mounts {core.mounts}")
            continue
        (resource,) = MODE_RESOURCES[mode]
        answer = plugin.allocate(resource, plugin.ids(resource, gpu.uuid, 1))
        _check_answer(report, f"{mode} GPU {gpu.index}", answer, plugin, gpu.uuid, minor, ctx.device_root)


def run(ctx: CheckContext) -> SectionReport:
    """The device plugin section."""
    report = SectionReport(TITLE)
    log = read_log(ctx.smi, timeout_s=min(30.0, ctx.budget_s))
    minors = {g.get("uuid"): (int(g.get("minor_number")) if g.get("minor_number") else None) for g in log.gpus}
    with Nvml() as nvml:
        gpus = [g for g in nvml.read_gpus() if g.healthy]
    if any(g.mig_enabled for g in gpus):
        modes = ["mig"]
        report.not_checked("whole, timeslice, mps", "the card is in MIG mode (left so: the check never changes it)")
    else:
        modes = ["exclusive", "timeslice", "mps"]
        report.not_checked("mig", "MIG is off on this card (the check never enables it)")
    for mode in modes:
        _mode(report, ctx, gpus, minors, mode)
    return report
