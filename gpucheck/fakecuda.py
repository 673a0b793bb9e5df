"""FAKE CUDA clients for the dry run: the protocol of gpucheck/cudaclient.py answered with no GPU.

It does what MPS is documented to do, so the MPS section's comparisons run on CPU: the pinned-memory
limit is ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` as the environment holds it when CUDA would start
(else the control daemon's default, asked through ``CUDA_MPS_PIPE_DIRECTORY``); the throughput of a
matmul is proportional to ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` (else the daemon's default); a held
allocation shows up as an MPS process in the fake NVML node (``TESSERA_FAKE_NVML``). Nothing here
proves anything about real MPS: the report says these clients are fake. ``GPUCHECK_FAKECUDA_FAIL=<command>``
makes that command crash, for the tests of what the section does then.
Run as ``python -m gpucheck.fakecuda COMMAND ...``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gpucheck.cudaclient import apply_env, parser
from simcluster.fakemps import CONTROL as FAKE_MPS_CONTROL
from tessera.nvml import FAKE_ENV

FAIL_ENV = "GPUCHECK_FAKECUDA_FAIL"  # a command name: that command crashes (tests: the daemon is stopped anyway)
CARD_GIB = 80
FULL_TFLOPS = 100.0  # a made-up figure: only the ratio between two fake clients means anything


def _ask_daemon(command: str) -> str:
    result = subprocess.run([sys.executable, FAKE_MPS_CONTROL], input=command + "\n", capture_output=True, text=True,
                            timeout=10, env=os.environ)
    return result.stdout.strip()


def limit_gib() -> int:
    """The pinned-memory limit this client runs under, in GiB (device 0)."""
    value = os.environ.get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "")
    limit = next((v.split("=", 1)[1] for v in value.split(",") if v.startswith("0=")), None)
    if limit is None:
        limit = _ask_daemon("get_default_device_pinned_mem_limit 0")
    if not limit or limit == "0":
        return CARD_GIB
    return int(limit[:-1]) // 1024 if limit.endswith("M") else int(limit.rstrip("G"))


def thread_pct() -> float:
    """The active thread percentage this client runs under."""
    value = os.environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE") or _ask_daemon("get_default_active_thread_percentage")
    return float(value or 100)


def _show(used_mib: int) -> None:
    from tessera.fakenvml import FaultInjector

    FaultInjector(os.environ[FAKE_ENV]).set_processes(0, [{"pid": os.getpid(), "used_mib": used_mib, "mps": True}])


def main(argv: list[str]) -> int:
    """One command of the client protocol, answered by the fake."""
    args = parser().parse_args(argv)
    if os.environ.get(FAIL_ENV) == args.command:
        sys.stderr.write(f"fake CUDA client: {args.command} crashed as {FAIL_ENV} asks\n")
        return 1
    apply_env(args.env)
    out: dict = {"kind": "fake", "pid": os.getpid()}
    if args.command == "probe":
        out.update(devices=1, name="fake CUDA client", sm_count=None, uuid=None)
    elif args.command == "alloc":
        limit = limit_gib()  # read when the context is made; --env-after-init comes too late to matter
        apply_env(args.env_after_init)
        allocated = min(args.target_gib, limit)
        out.update(allocated_gib=allocated, target_gib=args.target_gib,
                   error=None if allocated == args.target_gib else f"fake: out of memory at the {limit} GiB MPS limit")
    elif args.command == "matmul":
        tflops = FULL_TFLOPS * thread_pct() / 100
        out.update(tflops=tflops, seconds=2 * args.n ** 3 * args.iters / tflops / 1e12, n=args.n, iters=args.iters)
    else:
        _show(args.gib * 1024)
        print(json.dumps({**out, "ready": True, "held_gib": args.gib}), flush=True)
        sys.stdin.read()
        from tessera.fakenvml import FaultInjector

        FaultInjector(os.environ[FAKE_ENV]).set_processes(0, [])
        out["released"] = True
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
