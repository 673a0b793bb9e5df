"""Running a pod's containers under a real low-level runtime (runc or crun) with Tessera's hook.

The kubelet writes each container's bundle; :class:`ContainerRunner` runs it in the background with
``tessera-hook`` configured, as containerd or CRI-O would have runc run it, and reports back when
the container exits or could not start (the runtime's error carries the hook's one line).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simcluster.kubelet.runtime import OciRuntime, RunResult, busybox_rootfs, with_hook
from tessera.log import get_logger


@dataclass(frozen=True)
class ContainerExit:
    """How a container ended: ``started`` is False where the runtime (or the hook) refused it."""

    pod_uid: str
    container: str
    started: bool
    result: RunResult


ExitCallback = Callable[[ContainerExit], None]
StartCallback = Callable[[str, str], None]
STARTUP_S = 0.5  # how often to ask the runtime whether the container runs yet
STARTUP_LIMIT_S = 30.0  # past this the container counts as started whatever the runtime says


class ContainerRunner:
    """Runs bundles under one runtime; one background thread per running container."""

    def __init__(self, runtime: str, state_root: Path, hook_flags: list[str], on_started: StartCallback,
                 on_exit: ExitCallback) -> None:
        self.runtime = OciRuntime(runtime, state_root)
        self.hook_flags = list(hook_flags)
        self._on_started = on_started
        self._on_exit = on_exit
        self._running: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._log = get_logger("simkubelet.runtime", runtime=runtime)

    @staticmethod
    def container_id(pod_uid: str, container: str) -> str:
        return f"{pod_uid[:18]}-{container}"[:60]

    def prepare(self, bundle: Path, config: dict) -> dict:
        """Give the bundle a busybox root filesystem and the hook; returns the config to write."""
        busybox_rootfs(bundle / "rootfs")
        return with_hook(config, self.hook_flags)

    def start(self, pod_uid: str, container: str, bundle: Path) -> None:
        """Start the container; ``on_started`` and ``on_exit`` are called from a background thread."""
        cid = self.container_id(pod_uid, container)
        proc = self.runtime.start(bundle, cid)
        with self._lock:
            self._running[cid] = proc
        thread = threading.Thread(target=self._wait, args=(pod_uid, container, bundle, cid, proc),
                                  name=f"container-{cid}", daemon=True)
        thread.start()

    def _wait(self, pod_uid: str, container: str, bundle: Path, cid: str, proc: subprocess.Popen) -> None:
        try:
            out, err = self._wait_started(cid, proc)
        except subprocess.TimeoutExpired:
            self._on_started(pod_uid, container)
            out, err = proc.communicate()
            refused = False
        else:
            # runc and crun exit with 1 and their own error when the container never started.
            refused = proc.returncode != 0 and _runtime_refused(err + self.runtime.hook_stderr(bundle))
            if not refused:
                self._on_started(pod_uid, container)
        with self._lock:
            self._running.pop(cid, None)
        err += self.runtime.hook_stderr(bundle)
        result = RunResult(proc.returncode, out, err)
        started = not refused
        self._log.info("container_exited", container_id=cid, returncode=proc.returncode, started=started)
        self._on_exit(ContainerExit(pod_uid, container, started, result))

    def _wait_started(self, cid: str, proc: subprocess.Popen) -> tuple[str, str]:
        """The runtime's output if it ends before the container runs (refused, or a quick command);
        TimeoutExpired once the runtime says the container is running. Hooks run before that, and on a
        loaded machine they can take seconds: a fixed wait would call a refusal a failed start."""
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while True:
            try:
                return proc.communicate(timeout=STARTUP_S)
            except subprocess.TimeoutExpired:
                if self.runtime.status(cid) in ("running", "stopped") or time.monotonic() > deadline:
                    raise

    def kill_pod(self, pod_uid: str) -> None:
        """Stop every container of a pod (pod deleted)."""
        with self._lock:
            ids = [cid for cid in self._running if cid.startswith(pod_uid[:18])]
        for cid in ids:
            self.runtime.kill(cid)

    def stop(self) -> None:
        with self._lock:
            ids = list(self._running)
        for cid in ids:
            self.runtime.kill(cid)


def _runtime_refused(stderr: str) -> bool:
    text = stderr.lower()
    return any(marker in text for marker in ("error running hook", "error executing hook", "tessera-hook:",
                                             "container_linux.go", "oci runtime error", "exec failed"))


def first_error_line(stderr: str) -> str:
    """The line a user should read: the hook's own if there is one, else the runtime's last."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "tessera-hook:" in line:
            return line[line.index("tessera-hook:"):].replace("\\n", " ").rstrip('"\\ ')
    return lines[-1] if lines else "the container runtime failed without a message"
