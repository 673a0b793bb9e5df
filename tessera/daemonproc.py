"""Running a Tessera daemon from this checkout as a process of its own (the demo, the embedded
cluster, the tests and the benches do): a free port to give it, the process with its output in a
log file, and the process table to find what such processes left running."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_argvs() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, argv) of every process whose command line this one may read, from /proc (a process gone
    meanwhile is skipped)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        yield int(entry), argv


def spawn_daemon(module: str, args: list[str], log_path: str | None = None,
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m module args`` from the checkout (on PYTHONPATH, as the working directory), its
    stdout and stderr appended to ``log_path`` (discarded without one)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", ""))
                                                       if p)}
    env.update(extra_env or {})
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
    finally:
        if log_path:
            out.close()
