"""``python -m gpucheck``: the check of Tessera on a real NVIDIA GPU (read-only on the card), or its dry run.

Exit status 0 when no check failed (everything "not checked" included: a machine without an NVIDIA
driver), 1 when a check failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from gpucheck.report import Machine, counts, summary, write_reports
from gpucheck.runner import run_sections
from gpucheck.section import CheckContext, Outcome
from gpucheck.sections import SECTION_NAMES
from tessera.gpu import NvmlUnavailable
from tessera.log import configure_logging, get_logger

__all__ = ["main"]

log = get_logger("gpucheck")
CUDA_PYTHON_ENV = "GPUCHECK_CUDA_PYTHON"  # the python3 that has torch or cupy (default: python3 on PATH)
CLIENT = Path(__file__).with_name("cudaclient.py")


def build_parser() -> argparse.ArgumentParser:
    """The command line, every flag explained."""
    p = argparse.ArgumentParser(
        prog="python -m gpucheck",
        description="Check Tessera's node layers (NVML inventory, device nodes, device plugin answers, health "
                    "events, exporter, MPS, hook) on this machine's NVIDIA GPU and write gpu-check.md and "
                    "gpu-check.json. Read-only on the card: never changes MIG layout, clocks, compute mode, "
                    "persistence or ECC, never resets it, stops every daemon it starts. Exit 0 when nothing "
                    "failed (also when nothing could be checked), 1 when a check failed.")
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out",
                   help="folder for gpu-check.md and gpu-check.json (default: $OUT, else ./gpu-check-out)")
    p.add_argument("--dry-run", action="store_true",
                   help="run every section against Tessera's fake NVML, a stand-in nvidia-smi, device nodes made "
                        "in a scratch folder, the fake MPS control daemon and fake CUDA clients: no GPU is touched")
    p.add_argument("--fake-node", metavar="DESC",
                   help="with --dry-run: the fake node description (a file or a shipped name such as "
                        "h100-80gb-mig); default: one H100 whose device minor is 3")
    p.add_argument("--only", nargs="+", choices=SECTION_NAMES, metavar="SECTION",
                   help=f"run only these sections (of: {', '.join(SECTION_NAMES)}); default: all")
    p.add_argument("--no-driver", metavar="REASON", nargs="?", const="asked to act as on a machine without it",
                   help="act as on a machine without an NVIDIA driver (what CI runs): every section not checked, "
                        "exit 0; for tests that must not depend on whether a GPU is present")
    return p


# Where the driver's tools live when PATH lacks them: /usr/bin (NVIDIA's MPS docs: the control daemon is
# "typically stored under /usr/bin"), the container toolkit's /usr/local/nvidia/bin, the GPU Operator's driver
# root /run/nvidia/driver/usr/bin.
TOOL_DIRS = ("/usr/bin", "/usr/local/nvidia/bin", "/usr/local/bin", "/run/nvidia/driver/usr/bin")


def _find_tool(name: str) -> str | None:
    """``name`` on PATH, else in one of :data:`TOOL_DIRS`; None where neither has it."""
    found = shutil.which(name)
    if found:
        return found
    return next((str(p) for d in TOOL_DIRS if os.access(p := Path(d) / name, os.X_OK) and p.is_file()), None)


def _driver_problem(forced: str | None) -> str | None:
    """Why the GPU sections cannot run here (no driver, no nvidia-smi), or None."""
    if forced:
        return forced
    from tessera.nvml import Nvml

    try:
        Nvml().open().close()
    except NvmlUnavailable as err:
        return str(err).split(";")[0]
    if _find_tool("nvidia-smi") is None:
        return f"nvidia-smi not found on PATH nor in {', '.join(TOOL_DIRS)}"
    return None


def _machine(mode: str, notes: list[str]) -> Machine:
    from tessera.nvml import Nvml

    try:
        with Nvml() as nvml:
            gpus = nvml.read_gpus()
            return Machine([f"{g.index}: {g.name} ({g.uuid}, compute capability {g.compute_capability})"
                            for g in gpus], nvml.driver_version(), nvml.cuda_version(), mode, notes)
    except NvmlUnavailable:
        return Machine(mode=mode, notes=notes)


def _context(args: argparse.Namespace, work: Path) -> tuple[CheckContext, Machine]:
    ctx = CheckContext(out=Path(args.out), work=work)
    if args.dry_run:
        from gpucheck import dryrun

        fake = dryrun.prepare(ctx, args.fake_node)
        ctx.dry_run, ctx.fake_node, ctx.smi = True, str(fake.description), fake.smi
        ctx.device_root = None if fake.device_root is None else str(fake.device_root)
        ctx.proc_devices, ctx.sysfs_root = str(fake.proc_devices), str(fake.sysfs_root)
        ctx.mps_control, ctx.cuda_client, ctx.cuda_client_kind = (dryrun.fake_mps_control(),
                                                                   dryrun.fake_cuda_client(), "fake")
        notes = ["DRY RUN: NVML is Tessera's fake, nvidia-smi a stand-in printing the fake's state, device nodes "
                 "made in a scratch folder; the MPS daemon and CUDA clients are FAKE. Nothing here was measured on "
                 "a GPU."]
        return ctx, _machine("dry run (fake NVML, stand-in nvidia-smi)", notes)
    ctx.no_driver = _driver_problem(args.no_driver)
    if ctx.no_driver:
        return ctx, Machine(mode=f"no NVIDIA driver ({ctx.no_driver})")
    ctx.smi = Path(_find_tool("nvidia-smi") or "nvidia-smi")
    ctx.mps_control = _find_tool("nvidia-cuda-mps-control")
    python = os.environ.get(CUDA_PYTHON_ENV) or shutil.which("python3") or sys.executable
    ctx.cuda_client = [python, str(CLIENT)]
    return ctx, _machine("real", [f"CUDA clients run by {python}"])


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 when nothing failed, 1 when a check failed."""
    args = build_parser().parse_args(argv)
    if args.fake_node and not args.dry_run:
        build_parser().error("--fake-node needs --dry-run")
    configure_logging(level="warning", fmt="json", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="gpucheck-"))
    try:
        try:
            ctx, machine = _context(args, work)
        except ValueError as err:  # a --fake-node that names no description
            build_parser().error(str(err))
        names = list(args.only or SECTION_NAMES)
        reason = f"no NVIDIA driver ({ctx.no_driver})" if ctx.no_driver else None
        sections = run_sections(names, ctx, lambda _name: reason)
        md, js = write_reports(ctx.out, machine, sections)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(summary(sections))
    print(f"report: {md} and {js}")
    return 1 if counts(sections)[Outcome.FAILED] else 0
