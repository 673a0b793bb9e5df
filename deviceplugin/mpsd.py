"""Supervising the MPS control daemon through its pipe directory.

The daemon (``nvidia-cuda-mps-control -d``) runs in its own container of the DaemonSet, as the
configured user, with pipe, log and shm directories on the host, so a plugin restart never touches
running clients. The plugin talks to it as any client does: the control program with commands on
stdin. Each ``interval_s`` it asks ``get_server_list``; if nobody answers, MPS resources are reported
unhealthy (they cannot serve) and the daemon is started again (detached, in its own session). While
it is up, the daemon's defaults follow the largest live grant per GPU: ``set_default_device_pinned_mem_limit
<index> <GiB>G`` per device and ``set_default_active_thread_percentage`` (a node-wide default in MPS:
the largest core grant on any GPU). Clients narrow these with their own variables.
"""

from __future__ import annotations

import os
import subprocess
import time

from deviceplugin.rm import NodeDevices
from tessera.config import DevicePluginConfig
from tessera.log import get_logger
from tessera.periodic import PeriodicWorker

log = get_logger("deviceplugin")


class MpsSupervisor(PeriodicWorker):
    """Keeps the MPS control daemon answering and its defaults at the largest live grants."""

    def __init__(self, binary: str, config: DevicePluginConfig, rm: NodeDevices, interval_s: float = 1.0) -> None:
        super().__init__("dp-mps", interval_s, "mps_supervision_failed", log)
        self.binary = binary
        self.config = config
        self.rm = rm
        self._sent: dict[str, str] = {}
        self.env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": config.mps_pipe_directory,
                    "CUDA_MPS_LOG_DIRECTORY": config.mps_log_directory}

    def control(self, *commands: str, timeout_s: float = 3.0) -> str:
        """Send commands to the daemon; its answers, or OSError/RuntimeError when it does not answer."""
        result = subprocess.run([self.binary], input="\n".join(commands) + "\n", env=self.env, capture_output=True,
                                text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise RuntimeError((result.stderr or result.stdout).strip() or f"exit status {result.returncode}")
        return result.stdout

    def start(self) -> None:
        self.check()  # before the resources register: their health is right from the first listing
        super().start()

    def tick(self) -> None:
        self.check()

    def _answers(self) -> str | None:
        """None when the daemon answers, else why not."""
        try:
            self.control("get_server_list")
            return None
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            return str(err)

    def check(self) -> None:
        problem = self._answers()
        if problem is not None:
            self._sent.clear()
            self._launch()
            deadline = time.monotonic() + 3.0
            while problem is not None and time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(0.05)
                problem = self._answers()
        if problem is not None:
            if self.rm.set_mps_down(f"MPS control daemon not answering: {problem}"):
                log.warning("mps_daemon_down", reason=problem, pipe=self.config.mps_pipe_directory)
            return
        if self.rm.set_mps_down(None):
            log.info("mps_daemon_ready", pipe=self.config.mps_pipe_directory)
        self._apply_defaults()

    def _launch(self) -> None:
        user = self.config.mps_user
        for folder in (self.config.mps_pipe_directory, self.config.mps_log_directory, self.config.mps_shm_directory):
            os.makedirs(folder, exist_ok=True)
            if os.geteuid() == 0 and user != 0:
                os.chown(folder, user, user)  # the daemon, running as the MPS user, writes there
        # The daemon and its servers run as the MPS user (subprocess switches user without a
        # preexec_fn, which is unsafe in a threaded process).
        as_user = {"user": user, "group": user} if os.geteuid() == 0 and user != 0 else {}
        try:
            subprocess.run([self.binary, "-d"], env=self.env, start_new_session=True, **as_user,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=5, check=True)
            log.info("mps_daemon_started", binary=self.binary, user=user)
        except (OSError, subprocess.SubprocessError) as err:
            log.error("mps_daemon_start_failed", binary=self.binary, reason=str(err))

    def _apply_defaults(self) -> None:
        largest = self.rm.largest_mps_grants()
        wanted: dict[str, str] = {}
        cores = [c for c, _ in largest.values() if c]
        wanted["set_default_active_thread_percentage"] = str(max(cores) if cores else 100)
        for index, (_, mem) in sorted(largest.items()):
            gpu = self.rm.gpus[index]
            gib = mem or gpu.memory_total_mib // 1024
            wanted[f"set_default_device_pinned_mem_limit {index}"] = f"{gib}G"
        commands = [f"{k} {v}" for k, v in wanted.items() if self._sent.get(k) != v]
        if not commands:
            return
        try:
            self.control(*commands)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            log.warning("mps_defaults_failed", reason=str(err))
            return
        self._sent.update(wanted)
        log.info("mps_defaults_set", commands=commands)
