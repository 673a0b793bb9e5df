"""Run an OCI bundle under a real low-level runtime (runc or crun) with Tessera's hook configured.

The simulated kubelet writes a bundle (``config.json`` + ``rootfs/``); :class:`OciRuntime` runs it
the way containerd or CRI-O would have runc run it, with ``tessera-hook`` as the ``createRuntime``
and ``poststop`` hook (:func:`with_hook`), and returns the exit code, stdout and stderr. Where the
hook refuses a container, the runtime fails and its stderr carries the hook's line.

crun on a hybrid cgroup host (cgroup v1 controllers plus a v2 mount at ``/sys/fs/cgroup/unified``)
would try to use the v2 hierarchy, so it is run in a private mount namespace with that mount
removed (``unshare -m``). :func:`unavailable` says why a runtime cannot run here (missing binary,
not root), so callers can skip cleanly.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

RUNTIMES: tuple[str, ...] = ("runc", "crun")
HOOK_STAGES: tuple[str, ...] = ("createRuntime", "poststop")
HOOK_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
CGROUP_V2_HYBRID_MOUNT = "/sys/fs/cgroup/unified"
CRUN_HOOK_STDERR = "run.oci.hooks.stderr"
HOOK_STDERR = "hooks.stderr"
BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "env", "id", "sleep", "test", "[", "true", "false", "printf",
                   "stat", "head", "grep")


@dataclass
class RunResult:
    """What running one container gave."""

    returncode: int
    stdout: str
    stderr: str


def unavailable(runtime: str) -> str | None:
    """Why ``runtime`` cannot run containers here, or None where it can."""
    if runtime not in RUNTIMES:
        return f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})"
    if shutil.which(runtime) is None:
        return f"{runtime} is not installed"
    if os.geteuid() != 0:
        return f"{runtime} needs root here (rootless containers are not set up)"
    if runtime == "crun" and os.path.ismount(CGROUP_V2_HYBRID_MOUNT) and shutil.which("unshare") is None:
        return "crun on this hybrid cgroup host needs unshare(1)"
    return None


def hook_argv(stage: str, flags: list[str] | None = None, hook_path: str | None = None) -> list[str]:
    """The hook's argv for ``stage``: the installed ``tessera-hook`` beside this Python, else
    ``python -m hook.main``; ``flags`` are the hook's settings flags."""
    script = hook_path or os.path.join(os.path.dirname(sys.executable), "tessera-hook")
    if hook_path or os.access(script, os.X_OK):
        return [script, stage, *(flags or [])]
    return [sys.executable, "-m", "hook.main", stage, *(flags or [])]


def with_hook(config: dict, flags: list[str] | None = None, *, hook_path: str | None = None,
              env: list[str] | None = None, timeout_s: int = 10) -> dict:
    """A copy of ``config`` with tessera-hook as its createRuntime and poststop hooks.

    ``flags`` carry the hook's settings (``--runtime crio --state-dir ...``) and ``env`` its
    environment (runc and crun give a hook only what the entry lists).
    """
    result = copy.deepcopy(config)
    hooks = result.setdefault("hooks", {})
    for stage in HOOK_STAGES:
        argv = hook_argv(stage, flags, hook_path)
        hooks.setdefault(stage, []).append({"path": argv[0], "args": argv, "env": list(env or HOOK_ENV),
                                            "timeout": timeout_s})
    return result


def busybox_rootfs(directory: str | os.PathLike, busybox: str = "/bin/busybox") -> Path:
    """A minimal root filesystem: a static busybox and its applet links; returns its path."""
    root = Path(directory)
    for sub in ("bin", "proc", "dev", "sys", "tmp", "etc"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in BUSYBOX_APPLETS:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    return root


def write_bundle(bundle: str | os.PathLike, config: dict) -> Path:
    """Write ``config.json`` into ``bundle`` (whose ``rootfs`` the config names)."""
    path = Path(bundle)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


def _capture_hook_stderr(bundle: Path) -> None:
    path = bundle / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    annotations = config.setdefault("annotations", {})
    if CRUN_HOOK_STDERR not in annotations:
        annotations[CRUN_HOOK_STDERR] = str(bundle.resolve() / HOOK_STDERR)
        (bundle / HOOK_STDERR).write_text("", encoding="utf-8")
        path.write_text(json.dumps(config, indent=1), encoding="utf-8")


class OciRuntime:
    """runc or crun, with its own state directory so parallel users do not collide."""

    def __init__(self, runtime: str = "runc", state_root: str | os.PathLike | None = None) -> None:
        reason = unavailable(runtime)
        if reason:
            raise RuntimeError(reason)
        self.runtime = runtime
        self.state_root = str(state_root or tempfile.mkdtemp(prefix=f"tessera-{runtime}-state-"))

    def command(self, bundle: str | os.PathLike, container_id: str) -> list[str]:
        """The command line that runs the bundle to completion (create, start, wait, delete)."""
        argv = [self.runtime, "--root", self.state_root, "run", "--bundle", str(bundle), container_id]
        if self.runtime == "crun" and os.path.ismount(CGROUP_V2_HYBRID_MOUNT):
            script = f'umount {CGROUP_V2_HYBRID_MOUNT} 2>/dev/null; exec "$@"'
            argv = ["unshare", "-m", "--", "sh", "-c", script, "crun-hybrid", *argv]
        return argv

    def start(self, bundle: str | os.PathLike, container_id: str,
              log: str | os.PathLike | None = None) -> subprocess.Popen:
        """Start running the bundle; the caller waits (``communicate``) for it. With ``log``, the
        container's stdout and stderr (and the runtime's own errors) are appended to that file instead
        of piped, as a container runtime writes a container's log.

        crun discards a hook's output unless the ``run.oci.hooks.stderr`` annotation names a file,
        so for crun the bundle's config gets one (``<bundle>/hooks.stderr``) where it has none.
        """
        if self.runtime == "crun":
            _capture_hook_stderr(Path(bundle))
        if log is None:
            return subprocess.Popen(self.command(bundle, container_id), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with open(log, "ab") as out:
            return subprocess.Popen(self.command(bundle, container_id), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)

    def run(self, bundle: str | os.PathLike, container_id: str, timeout: float = 30) -> RunResult:
        """Run the bundle to completion; a container still running after ``timeout`` is killed."""
        proc = self.start(bundle, container_id)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(container_id)
            proc.kill()
            out, err = proc.communicate()
            err += f"\n{self.runtime}: container {container_id} killed after {timeout}s"
        return RunResult(proc.returncode, out, err + self.hook_stderr(bundle))

    def hook_stderr(self, bundle: str | os.PathLike) -> str:
        """What the hooks wrote to stderr, where the runtime does not put it in its own (crun)."""
        if self.runtime != "crun":
            return ""
        try:
            return (Path(bundle) / HOOK_STDERR).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def status(self, container_id: str) -> str | None:
        """The container's state as the runtime reports it (``creating``, ``created``, ``running``,
        ``stopped``), or None where it knows no such container yet (or no more)."""
        try:
            proc = subprocess.run([self.runtime, "--root", self.state_root, "state", container_id],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10, check=False)
            return json.loads(proc.stdout).get("status") if proc.returncode == 0 else None
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None

    def kill(self, container_id: str) -> None:
        """Kill and delete a container left running (best effort)."""
        subprocess.run([self.runtime, "--root", self.state_root, "delete", "--force", container_id],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
