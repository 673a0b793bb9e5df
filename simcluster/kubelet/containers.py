"""Running a pod's containers: under a real low-level runtime (runc or crun) with Tessera's hook, or
simulated where none runs.

The kubelet writes each container's bundle; :class:`ContainerRunner` runs it in the background with
``tessera-hook`` configured, as containerd or CRI-O would have runc run it, its output in the
container's log file, and reports back when the container started, and when it exited or could not
start (the runtime's error carries the hook's one line, or the missing executable).
:class:`SimulatedRunner` has the same face and runs nothing: a container "runs" until the pod's
``simcluster.tessera.io/run-seconds`` annotation says it exits, with ``.../exit-code``.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from simcluster.kubelet.runtime import OciRuntime, RunResult, busybox_rootfs, with_hook
from tessera.log import get_logger

RUN_SECONDS_ANNOTATION = "simcluster.tessera.io/run-seconds"
EXIT_CODE_ANNOTATION = "simcluster.tessera.io/exit-code"


@dataclass(frozen=True)
class ContainerExit:
    """How one run of a container ended: ``started`` is False where the runtime (or the hook) refused it."""

    pod_uid: str
    container: str
    container_id: str
    started: bool
    result: RunResult


ExitCallback = Callable[[ContainerExit], None]
StartCallback = Callable[[str, str, str], None]  # (pod UID, container name, container ID)
STARTUP_S = 0.5  # how often to ask the runtime whether the container runs yet


def container_id(pod_uid: str, container: str, attempt: int) -> str:
    """The runtime's name for one run (``attempt``: the restart count) of a pod's container."""
    return f"{pod_uid[:18]}-{attempt}-{container}"[:60]


class Runner(Protocol):
    """What the kubelet's pod workers run containers with."""

    def start(self, pod: dict, container: str, attempt: int, bundle: Path, log: Path) -> str: ...

    def kill_pod(self, pod_uid: str) -> None: ...

    def stop(self) -> None: ...


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

    def prepare(self, bundle: Path, config: dict, tools: dict[str, str] | None = None) -> dict:
        """Give the bundle a busybox root filesystem (plus ``tools``: path in the container -> script, as
        NVIDIA's container toolkit adds the driver's ``nvidia-smi``) and the hook; returns the config."""
        rootfs = busybox_rootfs(bundle / "rootfs")
        for path, script in (tools or {}).items():
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(script)
            target.chmod(0o755)
        return with_hook(config, self.hook_flags)

    def start(self, pod: dict, container: str, attempt: int, bundle: Path, log: Path) -> str:
        """Start one run of the container, its output appended to ``log``; returns its container ID.
        ``on_started`` and ``on_exit`` are called from a background thread."""
        pod_uid = pod["metadata"]["uid"]
        cid = container_id(pod_uid, container, attempt)
        proc = self.runtime.start(bundle, cid, log)
        with self._lock:
            self._running[cid] = proc
        thread = threading.Thread(target=self._wait, args=(pod_uid, container, bundle, cid, proc, log),
                                  name=f"container-{cid}", daemon=True)
        thread.start()
        return cid

    def _wait(self, pod_uid: str, container: str, bundle: Path, cid: str, proc: subprocess.Popen,
              log: Path) -> None:
        ran = self._wait_started(cid, proc)
        if ran:
            self._on_started(pod_uid, container, cid)
            proc.wait()
        output = log.read_text(errors="replace") if log.exists() else ""
        # runc and crun exit with 1 and their own error when the container never started.
        refused = not ran and proc.returncode != 0 and _runtime_refused(output + self.runtime.hook_stderr(bundle))
        if refused:
            log.write_text("")  # the runtime's error, not the container's output: the container never ran
        elif not ran:
            self._on_started(pod_uid, container, cid)  # a quick command, done before the runtime was asked
        with self._lock:
            self._running.pop(cid, None)
        result = RunResult(proc.returncode, "", output + self.runtime.hook_stderr(bundle))
        self._log.info("container_exited", container_id=cid, returncode=proc.returncode, started=not refused)
        self._on_exit(ContainerExit(pod_uid, container, cid, not refused, result))

    def _wait_started(self, cid: str, proc: subprocess.Popen) -> bool:
        """True once the runtime says the container runs; False where the runtime ended first (refused, or
        a quick command). Hooks run before that, and on a loaded machine they can take long: this waits
        as long as the runtime process lives, never on a clock."""
        while True:
            try:
                proc.wait(timeout=STARTUP_S)
                return False
            except subprocess.TimeoutExpired:
                if self.runtime.status(cid) in ("running", "stopped"):
                    return True

    def kill_pod(self, pod_uid: str) -> None:
        """Stop every container of a pod (pod deleted or finished)."""
        with self._lock:
            ids = [cid for cid in self._running if cid.startswith(pod_uid[:18])]
        for cid in ids:
            self.runtime.kill(cid)

    def stop(self) -> None:
        with self._lock:
            ids = list(self._running)
        for cid in ids:
            self.runtime.kill(cid)


class SimulatedRunner:
    """Runs nothing: a container starts at once and exits only where its pod's annotations say when."""

    def __init__(self, on_started: StartCallback, on_exit: ExitCallback) -> None:
        self._on_started = on_started
        self._on_exit = on_exit
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()

    def start(self, pod: dict, container: str, attempt: int, bundle: Path, log: Path) -> str:
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        cid = container_id(meta["uid"], container, attempt)
        log.touch()
        threading.Thread(target=self._on_started, args=(meta["uid"], container, cid), daemon=True).start()
        run_seconds = annotations.get(RUN_SECONDS_ANNOTATION)
        if run_seconds:
            code = int(annotations.get(EXIT_CODE_ANNOTATION, "0"))
            exit = ContainerExit(meta["uid"], container, cid, True, RunResult(code, "", ""))
            timer = threading.Timer(float(run_seconds), self._exit, args=(cid, exit))
            timer.daemon = True
            with self._lock:
                self._timers[cid] = timer
            timer.start()
        return cid

    def _exit(self, cid: str, exit: ContainerExit) -> None:
        with self._lock:
            if self._timers.pop(cid, None) is None:
                return  # killed meanwhile
        self._on_exit(exit)

    def kill_pod(self, pod_uid: str) -> None:
        with self._lock:
            for cid in [c for c in self._timers if c.startswith(pod_uid[:18])]:
                self._timers.pop(cid).cancel()

    def stop(self) -> None:
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()


def _runtime_refused(stderr: str) -> bool:
    text = stderr.lower()
    return any(marker in text for marker in ("error running hook", "error executing hook", "tessera-hook:",
                                             "container_linux.go", "oci runtime error", "exec failed",
                                             "unable to start container process", "not found in $path"))


def first_error_line(stderr: str) -> str:
    """The line a user should read: the hook's own if there is one, else the runtime's last."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "tessera-hook:" in line:
            return line[line.index("tessera-hook:"):].replace("\\n", " ").rstrip('"\\ ')
    if not lines:
        return "the container runtime failed without a message"
    last = lines[-1]
    if 'msg="' in last:  # runc's logrus line: time="..." level=error msg="runc run failed: ..."
        last = last.split('msg="', 1)[1].rstrip('"').replace('\\"', '"')
    return last
