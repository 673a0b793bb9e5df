"""The processes a real cluster left running, found by its working folder (``/tmp/tessera-real-*``) in
their command lines: etcd's data dir, kube-apiserver's certificates, ... name it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

FOLDER = re.compile(rb"/tmp/tessera-real-[^/\s\x00]+")


def _folders_named(pid: int) -> set[str]:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:   # gone meanwhile
        return set()
    return {m.decode() for m in FOLDER.findall(cmdline)}


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def processes_in(folder: str | Path) -> dict[int, str]:
    """PID -> program name of each live process whose command line names ``folder``."""
    out = {}
    for pid in _pids():
        if str(folder) in _folders_named(pid):
            try:
                out[pid] = Path(f"/proc/{pid}/exe").resolve().name
            except OSError:
                out[pid] = "?"
    return out


def cluster_folders_of(parent: int) -> set[str]:
    """The cluster folders named by the command lines of ``parent``'s children."""
    found = set()
    for pid in _pids():
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found |= _folders_named(pid)
    return found


def remove_leftovers(folder: str | Path) -> None:
    """SIGKILL each process still naming ``folder``, by its PID, and remove the folder."""
    for pid in processes_in(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def stop_holder(proc: subprocess.Popen, folder: str = "", grace_s: float = 300.0) -> None:
    """End a test's child process that holds a real cluster, leaving nothing of the cluster: SIGTERM
    (``realcluster.running`` and ``tessera demo`` stop their cluster on it), SIGKILL past ``grace_s``;
    then each program still naming the cluster's folder (``folder``, and those its children named before
    the signal) is killed by PID and the folder removed."""
    folders = {folder} - {""}
    if proc.poll() is None:
        folders |= cluster_folders_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for each in folders:
        remove_leftovers(each)


def said(proc: subprocess.Popen) -> str:
    """The next line a test's child Python process says for the test: one beginning "@ " (its log lines
    go to stdout too); "" once it ends."""
    for line in proc.stdout:
        if line.startswith("@ "):
            return line[2:].rstrip("\n")
    return ""
