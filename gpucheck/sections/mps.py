"""MPS for real: a control daemon started as the device plugin starts it (own pipe and log folders), its
defaults set as the plugin's supervisor sets them (pinned memory at the largest grant), then CUDA clients
with the environment Allocate answered: (a) an 8 GiB grant allocating 12 GiB must fail at the limit,
(b) 30 % against 100 % active threads on one matmul, (c) the memory the exporter attributes to a client
(its attribution code on NVML's per-process figures) against its grant, (d) clients that change their own
environment after they start (the limit is cooperative: what happens is reported). The daemon is stopped
at the end whatever happens."""

from __future__ import annotations

import time
import traceback

from deviceplugin.mpsdaemon import DaemonState, MpsDaemon
from exporter.attribution import ProcessOwners, attribute
from gpucheck.mpsclients import ClientError, Clients
from gpucheck.plugin import PluginOnNode
from gpucheck.section import CheckContext, SectionReport
from tessera.containerrecord import ContainerRecord
from tessera.grant import Grant, verify
from tessera.nvml import Nvml

TITLE = "MPS: control daemon, pinned-memory and thread limits with real CUDA clients"
LIMIT_ENV = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"
GRANT_GIB, TRY_GIB, HOLD_GIB = 8, 12, 2
SLACK_GIB = 2  # the CUDA context and allocator may count against the limit: the limit may bite a block or two early
LOW_PCT, FULL_PCT = 30, 100
MIB = 1 << 20
STOP_RESERVE_S = 25.0  # kept back from the budget to stop the daemon
START_WAIT_S = 20.0


def _start(report: SectionReport, daemon: MpsDaemon) -> bool:
    failure = daemon.launch(timeout_s=START_WAIT_S)
    deadline = time.monotonic() + START_WAIT_S
    while failure is None and daemon.state() is DaemonState.GONE and time.monotonic() < deadline:
        time.sleep(0.05)  # the detached daemon writes its pid file and binds its socket
    ok = failure is None and daemon.state() is not DaemonState.GONE
    report.expect("control daemon started", ok, f"{daemon.binary} -d with CUDA_MPS_PIPE_DIRECTORY={daemon.pipe_dir}, "
                  f"CUDA_MPS_LOG_DIRECTORY={daemon.log_dir}: " + (f"pid {daemon.pid()}" if ok else f"{failure}"),
                  pid=daemon.pid())
    return ok


def _defaults(report: SectionReport, daemon: MpsDaemon, plugin: PluginOnNode) -> None:
    """The commands the plugin's supervisor sends (deviceplugin/mpsd.py), from the resource manager's grants."""
    largest = plugin.rm.largest_mps_grants()
    cores = [c for c, _ in largest.values() if c]
    commands = [f"set_default_active_thread_percentage {max(cores) if cores else 100}"]
    commands += [f"set_default_device_pinned_mem_limit {index} {mem}G" for index, (_, mem) in sorted(largest.items())]
    daemon.control(*commands, timeout_s=10)
    answers = {i: daemon.control(f"get_default_device_pinned_mem_limit {i}", timeout_s=10).strip() for i in largest}
    ok = all(limit_mib(answers[i]) == mem * 1024 for i, (_, mem) in largest.items())
    report.expect("daemon defaults at the largest grant", ok, f"sent {commands}; the daemon answers {answers}",
                  largest_gib={i: m for i, (_, m) in largest.items()})


def limit_mib(answer: str) -> float | None:
    """A pinned-memory limit the control daemon printed, in MiB: the value is set as an integer with a "G" or
    "M" qualifier (NVIDIA's MPS docs; NVIDIA's device plugin sends "<n>M", Tessera's "<n>G"); how the daemon
    prints it back is not documented, so "8G", "8GB", "8192M", "8192 MB", "8.000G" and a plain byte count are
    all read. None for anything else."""
    text = answer.strip().splitlines()[-1].strip().upper().replace(" ", "") if answer.strip() else ""
    for unit, scale in (("GB", 1024), ("G", 1024), ("MB", 1), ("M", 1), ("B", 1 / MIB), ("", 1 / MIB)):
        if text.endswith(unit):
            try:
                return float(text[:len(text) - len(unit)]) * scale
            except ValueError:
                return None
    return None


def _limit(report: SectionReport, clients: Clients, share: dict[str, str]) -> None:
    got = clients.run(["alloc", "--target-gib", str(TRY_GIB)], share)
    n, error = got["allocated_gib"], got.get("error") or ""
    # Over the limit cudaMalloc answers cudaErrorMemoryAllocation: torch.OutOfMemoryError ("CUDA out of
    # memory"), cupy's OutOfMemoryError ("Out of memory allocating ..."). Any other failure (no MPS server,
    # a driver error) is not the limit at work, and neither is one long before the grant is used.
    oom = "outofmemory" in error.lower().replace(" ", "")
    ok = oom and GRANT_GIB - SLACK_GIB <= n <= GRANT_GIB
    report.expect(f"(a) {GRANT_GIB} GiB grant stops a {TRY_GIB} GiB allocation", ok,
                  f"{LIMIT_ENV}={share.get(LIMIT_ENV)}: {n} GiB allocated in 1 GiB blocks, then "
                  f"{error or 'no failure'} (expected: out of memory after {GRANT_GIB - SLACK_GIB} to {GRANT_GIB} "
                  f"GiB)", largest_ok_gib=n)


def _threads(report: SectionReport, clients: Clients, low: dict[str, str], full: dict[str, str]) -> None:
    slow = clients.run(["matmul"], low)
    fast = clients.run(["matmul"], full)
    ratio = slow["tflops"] / fast["tflops"] if fast["tflops"] else float("nan")
    report.expect(f"(b) {LOW_PCT} % active threads against {FULL_PCT} %", ratio < 0.75,
                  f"fp16 matmul n={slow['n']} x{slow['iters']}: {slow['tflops']:.1f} against {fast['tflops']:.1f} "
                  f"TFLOP/s, ratio {ratio:.2f} (expected well under 1)", ratio=round(ratio, 3),
                  low_tflops=round(slow["tflops"], 2), full_tflops=round(fast["tflops"], 2))


def _attribution(report: SectionReport, clients: Clients, share: dict[str, str], grants: list[Grant],
                 gpu_uuid: str) -> None:
    """The exporter's attribution (exporter/attribution.py) of a holding client, as if the hook had recorded
    it as a container with the share's grants: its memory against its grant."""
    with clients.holding(HOLD_GIB, share) as ready:
        with Nvml() as nvml:
            infos = nvml.read_gpus()
            sample = next(s for s in nvml.sample_gpus() if s.uuid == gpu_uuid)
    record = ContainerRecord("gpucheck-client", ready["pid"], "gpucheck", "gpucheck", "gpucheck-uid", "client",
                             grants=grants)
    usages, unattributed = attribute(infos, [sample], [record], None, ProcessOwners([record]))
    mine = next((u for u in usages if u.gpu_uuid == gpu_uuid), None)
    seen = [(p.pid, p.used_memory_mib, p.mps_client) for p in sample.processes]
    if mine is None or not mine.processes:
        report.failed("(c) per-process memory against the grant", f"the exporter attributes nothing to client pid "
                      f"{ready['pid']} holding {HOLD_GIB} GiB; NVML's processes (pid, MiB, MPS): {seen}; "
                      f"unattributed bytes {unattributed}")
        return
    used_mib, grant_mib = mine.used_bytes // MIB, (mine.grant_memory_bytes or 0) // MIB
    ok = HOLD_GIB * 1024 <= used_mib <= grant_mib == GRANT_GIB * 1024 and mine.overuse_bytes == 0
    report.expect("(c) per-process memory against the grant", ok,
                  f"the exporter attributes {used_mib} MiB in {mine.processes} process(es) to the client holding "
                  f"{HOLD_GIB} GiB, against a {grant_mib} MiB grant (overuse {mine.overuse_bytes // MIB} MiB); "
                  f"NVML's processes (pid, MiB, MPS): {seen}", used_mib=used_mib, grant_mib=grant_mib)


def _env_changed(report: SectionReport, clients: Clients, share: dict[str, str]) -> None:
    removed = clients.run(["alloc", "--target-gib", str(TRY_GIB), "--env", f"{LIMIT_ENV}="], share)
    report.expect("(d) a client that removes its limit falls back to the daemon default", removed["allocated_gib"]
                  <= GRANT_GIB, f"{removed['allocated_gib']} GiB of {TRY_GIB} allocated; {removed.get('error')}",
                  allocated_gib=removed["allocated_gib"])
    late = clients.run(["alloc", "--target-gib", str(TRY_GIB), "--env-after-init", f"{LIMIT_ENV}=0=16G"], share)
    report.expect("(d) raising the limit after CUDA started changes nothing", late["allocated_gib"] <= GRANT_GIB,
                  f"{late['allocated_gib']} GiB of {TRY_GIB} allocated; {late.get('error')}",
                  allocated_gib=late["allocated_gib"])
    raised = clients.run(["alloc", "--target-gib", str(TRY_GIB), "--env", f"{LIMIT_ENV}=0=16G"], share)
    n = raised["allocated_gib"]
    report.passed("(d) raising the limit before CUDA starts (observed)",
                  f"{n} GiB of {TRY_GIB} allocated under a {GRANT_GIB} GiB grant: " + (
                      "the limit is cooperative, the client's own environment wins; the hook and the exporter's "
                      "overuse check are what guard it" if n > GRANT_GIB
                      else "the daemon held the client to its grant"),
                  allocated_gib=n)


def _stop(report: SectionReport, daemon: MpsDaemon) -> None:
    pid = daemon.pid()
    stopped = daemon.stop(timeout_s=STOP_RESERVE_S - 5)
    left = daemon.daemons()
    report.expect("control daemon stopped", stopped and not left,
                  f"quit, then SIGTERM/SIGKILL as needed: daemon pid {pid} " + ("gone" if stopped and not left
                                                                                 else f"still there: {left}"))


def _clients_usable(report: SectionReport, ctx: CheckContext, clients: Clients) -> bool:
    try:
        probe = clients.run(["probe"], {}, most_s=60)
    except ClientError as err:
        report.not_checked("CUDA clients", f"no CUDA python found: {err}")
        return False
    fake = " (FAKE clients of the dry run: nothing here is measured on a GPU)" if ctx.cuda_client_kind == "fake" else ""
    report.passed("CUDA clients",
                  f"{probe.get('kind')} sees {probe.get('devices')} device(s): {probe.get('name')}{fake}")
    return True


def run(ctx: CheckContext) -> SectionReport:
    """The MPS section."""
    report = SectionReport(TITLE)
    if ctx.mps_control is None:
        report.not_checked("MPS", "nvidia-cuda-mps-control not found on PATH nor where the driver puts it")
        return report
    if not ctx.cuda_client:
        report.not_checked("MPS", "no CUDA python (PyTorch or CuPy) to run clients")
        return report
    clients = Clients(ctx.cuda_client, ctx.cuda_client_kind == "fake", time.monotonic() + ctx.budget_s - STOP_RESERVE_S)
    if not _clients_usable(report, ctx, clients):
        return report
    with Nvml() as nvml:
        gpus = [g for g in nvml.read_gpus() if g.healthy and not g.mig_enabled]
    if not gpus:
        report.not_checked("MPS", "no GPU outside MIG mode (MIG is left as it is)")
        return report
    gpu = gpus[0]
    pipe, log, shm = (str(ctx.work / k) for k in ("pipe", "log", "shm"))
    plugin = PluginOnNode([gpu], "mps", ctx.device_root or "/", pipe, shm)
    low, _ = plugin.mps_share(gpu.uuid, LOW_PCT, GRANT_GIB)
    full, answers = plugin.mps_share(gpu.uuid, FULL_PCT, GRANT_GIB)
    grants = [verify(k, v, plugin.key) for a in answers for k, v in a.annotations.items()]
    daemon = MpsDaemon(ctx.mps_control, pipe, log, shm)
    try:
        if not _start(report, daemon):
            return report
        steps = {"daemon defaults": lambda: _defaults(report, daemon, plugin),
                 "(a) memory limit": lambda: _limit(report, clients, full),
                 "(b) active threads": lambda: _threads(report, clients, low, full),
                 "(c) per-process memory": lambda: _attribution(report, clients, full, grants, gpu.uuid),
                 "(d) environment changed after start": lambda: _env_changed(report, clients, full)}
        for name, step in steps.items():
            try:
                step()
            except (ClientError, OSError, RuntimeError, KeyError, StopIteration) as err:
                report.failed(name, traceback.format_exception_only(type(err), err)[-1].strip())
    finally:
        _stop(report, daemon)
    return report
