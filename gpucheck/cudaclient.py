#!/usr/bin/env python3
"""A CUDA client for the MPS checks, run by the machine's own python3 (where PyTorch or CuPy lives):
standard library plus ``torch`` or ``cupy``, nothing of Tessera. One command per run, one JSON line out.

    cudaclient.py probe                       # which CUDA python, and the devices it sees
    cudaclient.py alloc --target-gib 12       # allocate 1 GiB blocks until 12 GiB or the first failure
    cudaclient.py matmul --n 8192 --iters 200 # the same fp16 matmul, timed: TFLOP/s
    cudaclient.py hold --gib 2                # allocate, say "ready", hold until stdin closes

``--env K=V`` (or ``--env K=`` to remove K) changes this process's environment after it started and
before CUDA is first used: a tenant rewriting Tessera's variables in its own process. ``--env-after-init``
does the same once the CUDA context exists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

GIB = 1 << 30


def _backend(prefer: str | None):
    names = [prefer] if prefer else ["torch", "cupy"]
    for name in names:
        try:
            if name == "torch":
                import torch

                if torch.cuda.is_available():
                    return "torch", torch
            elif name == "cupy":
                import cupy

                cupy.cuda.runtime.getDeviceCount()
                return "cupy", cupy
        except Exception:  # noqa: BLE001 - any failure means this backend is not usable here
            continue
    return None, None


def apply_env(pairs: list[str]) -> None:
    """``K=V`` sets K, ``K=`` removes it, in this process's environment."""
    for pair in pairs:
        key, _, value = pair.partition("=")
        if value:
            os.environ[key] = value
        else:
            os.environ.pop(key, None)


def _alloc_block(kind: str, lib, nbytes: int):
    if kind == "torch":
        return lib.empty(nbytes, dtype=lib.uint8, device="cuda")
    return lib.empty(nbytes, dtype=lib.uint8)


def _init(kind: str, lib) -> None:
    _alloc_block(kind, lib, 1)  # creates the context (and with MPS, connects to the server)


def cmd_probe(kind: str, lib, _args) -> dict:
    if kind == "torch":
        props = lib.cuda.get_device_properties(0)
        return {"kind": kind, "devices": lib.cuda.device_count(), "name": props.name,
                "sm_count": props.multi_processor_count, "uuid": str(getattr(props, "uuid", "")) or None}
    props = lib.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return {"kind": kind, "devices": lib.cuda.runtime.getDeviceCount(), "name": name,
            "sm_count": props["multiProcessorCount"], "uuid": None}


def cmd_alloc(kind: str, lib, args) -> dict:
    _init(kind, lib)
    apply_env(args.env_after_init)
    blocks, error = [], None
    while len(blocks) < args.target_gib:
        try:
            blocks.append(_alloc_block(kind, lib, GIB))
        except Exception as err:  # noqa: BLE001 - the allocation failure is the answer
            error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            break
    return {"allocated_gib": len(blocks), "target_gib": args.target_gib, "error": error}


def cmd_matmul(kind: str, lib, args) -> dict:
    n = args.n
    if kind == "torch":
        a = lib.randn(n, n, device="cuda", dtype=lib.float16)
        b = lib.randn(n, n, device="cuda", dtype=lib.float16)
        sync = lib.cuda.synchronize
    else:
        a = lib.random.standard_normal((n, n), dtype=lib.float32).astype(lib.float16)
        b = lib.random.standard_normal((n, n), dtype=lib.float32).astype(lib.float16)
        sync = lib.cuda.Device().synchronize
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(args.iters):
        a @ b
    sync()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tflops": 2 * n ** 3 * args.iters / seconds / 1e12, "n": n, "iters": args.iters}


def cmd_hold(kind: str, lib, args) -> dict:
    blocks = [_alloc_block(kind, lib, GIB) for _ in range(args.gib)]
    print(json.dumps({"ready": True, "pid": os.getpid(), "held_gib": len(blocks)}), flush=True)
    sys.stdin.read()  # until the check closes our stdin
    return {"released": True}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["probe", "alloc", "matmul", "hold"])
    p.add_argument("--backend", choices=["torch", "cupy"], help="which CUDA python (default: torch, else cupy)")
    p.add_argument("--target-gib", type=int, default=12)
    p.add_argument("--gib", type=int, default=2)
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--env", action="append", default=[], help="K=V (or K=) before CUDA is first used")
    p.add_argument("--env-after-init", action="append", default=[], help="K=V (or K=) once the context exists")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    apply_env(args.env)
    kind, lib = _backend(args.backend)
    if kind is None:
        print(json.dumps({"error": "no CUDA python: neither torch (with CUDA) nor cupy is usable"}))
        return 3
    commands = {"probe": cmd_probe, "alloc": cmd_alloc, "matmul": cmd_matmul, "hold": cmd_hold}
    result = commands[args.command](kind, lib, args)
    print(json.dumps({"kind": kind, "pid": os.getpid(), **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
