"""``tessera fake-nvml ...``: break GPUs and set workloads on a fake node from a shell.

    tessera fake-nvml xid --node node.yaml --gpu 0 --xid 79
    tessera fake-nvml lose --node node.yaml --gpu 2
    tessera fake-nvml processes --node node.yaml --gpu 1 --process 4242:8192
    tessera fake-nvml show --node a100-80gb-mig        # a shipped description, read through NVML

``--node`` takes a description file or the name of a shipped one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tessera.fakenvml.control import FaultInjector
from tessera.fakenvml.description import DescriptionError
from tessera.fakenvml.shipped import resolve_node_description


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera fake-nvml", description="Drive a fake NVML GPU node.")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, gpu: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--node", required=True, help="node description file, or the name of a shipped one")
        if gpu:
            p.add_argument("--gpu", type=int, required=True, help="GPU index")
        return p

    command("xid", "deliver an Xid error event").add_argument("--xid", type=int, required=True)
    command("lose", "the GPU falls off the bus (NVML_ERROR_GPU_IS_LOST, Xid 79)")
    command("fail", "every call on the GPU fails with an NVML error").add_argument(
        "--error", default="UNKNOWN", help="NVML_ERROR_<name>: UNKNOWN, RESET_REQUIRED, ...")
    command("restore", "the GPU answers again")
    p = command("processes", "replace the processes on a GPU (or a MIG GPU instance)")
    p.add_argument("--process", action="append", default=[], metavar="PID:MIB[:SM%]",
                   help="repeatable; none clears; SM%% is its per-process utilization")
    p.add_argument("--gpu-instance", type=int, help="MIG GPU-instance id")
    p.add_argument("--mps", action="store_true", help="the processes are MPS clients")
    p = command("utilization", "set GPU and memory utilization (of a MIG GPU instance: GPM figures on H100)")
    p.add_argument("--gpu-pct", type=int, required=True)
    p.add_argument("--mem-pct", type=int, default=0)
    p.add_argument("--gpu-instance", type=int, help="MIG GPU-instance id")
    p.add_argument("--sm-occupancy-pct", type=int, help="GPM SM occupancy (default: --gpu-pct)")
    p = command("ecc", "inject ECC errors")
    p.add_argument("--corrected", type=int, default=0)
    p.add_argument("--uncorrected", type=int, default=0)
    command("reset", "forget every injected fault and workload", gpu=False)
    command("show", "print the node's GPUs as Tessera's NVML layer reads them", gpu=False).add_argument(
        "--json", action="store_true")
    return parser


def fake_nvml_main(argv: list[str] | None = None) -> int:
    """Run one fake-NVML command; 0 on success, 2 on a bad argument (with the reason on stderr)."""
    args = _parser().parse_args(argv)
    try:
        path = resolve_node_description(args.node)
        if args.command == "show":
            return _show(path, args.json)
        _inject(FaultInjector(path), args)
    except (ValueError, DescriptionError) as err:
        print(f"tessera fake-nvml {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


def _inject(injector: FaultInjector, args: argparse.Namespace) -> None:
    cmd = args.command
    if cmd == "xid":
        injector.inject_xid(args.gpu, args.xid)
    elif cmd == "lose":
        injector.lose_gpu(args.gpu)
    elif cmd == "fail":
        injector.fail_gpu(args.gpu, args.error)
    elif cmd == "restore":
        injector.restore_gpu(args.gpu)
    elif cmd == "processes":
        procs = []
        for item in args.process:
            parts = item.split(":")
            if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
                raise ValueError(f"--process {item!r} is not PID:MIB or PID:MIB:SM%")
            procs.append(tuple(int(p) for p in parts))
        injector.set_processes(args.gpu, procs, gpu_instance_id=args.gpu_instance, mps=args.mps)
    elif cmd == "utilization":
        injector.set_utilization(args.gpu, args.gpu_pct, args.mem_pct, gpu_instance_id=args.gpu_instance,
                                 sm_occupancy_pct=args.sm_occupancy_pct)
    elif cmd == "ecc":
        injector.inject_ecc(args.gpu, args.corrected, args.uncorrected)
    elif cmd == "reset":
        injector.reset()


def _show(path: Path, as_json: bool) -> int:
    from tessera_cli.inventory_table import print_inventory

    return print_inventory(str(path), as_json=as_json)
