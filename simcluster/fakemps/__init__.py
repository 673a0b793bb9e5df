"""A fake ``nvidia-cuda-mps-control`` for CPU machines; point ``--mps-control-binary`` at :data:`CONTROL`."""

from __future__ import annotations

import os
from pathlib import Path

from tessera.daemonproc import process_argvs

CONTROL = str(Path(__file__).with_name("control.py"))


def running_daemons(pipe_dir: str | Path) -> list[int]:
    """Pids of the fake control daemons (``control.py -d`` or ``-f``) serving ``pipe_dir`` or a pipe
    directory below it, from the process table (their ``CUDA_MPS_PIPE_DIRECTORY``)."""
    root = os.path.realpath(pipe_dir)
    found = []
    for pid, argv in process_argvs():
        if not any(a.endswith(b"control.py") for a in argv[:2]) or not {b"-d", b"-f"} & set(argv):
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        pipe = next((e.split(b"=", 1)[1] for e in environ if e.startswith(b"CUDA_MPS_PIPE_DIRECTORY=")), None)
        if pipe is None:
            continue
        pipe_path = os.path.realpath(pipe.decode(errors="replace"))
        if pipe_path == root or pipe_path.startswith(root + os.sep):
            found.append(pid)
    return sorted(found)
