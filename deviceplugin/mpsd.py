"""Supervising the MPS control daemon through its pipe directory.

The device plugin owns the node's MPS control daemon: it supervises it whenever the node has an MPS GPU
(from the first moment one is in mps mode, at start or later by the node label or a config reload),
its own or the DRA driver's (``draplugin.gpu_modes`` ``mps``: the driver points its claims' clients at
the same pipe and shm directories), and this supervisor is the one writer of the daemon's defaults.

The daemon (``nvidia-cuda-mps-control -d``) runs detached, as the configured user, with pipe, log and
shm directories on the host, so a plugin restart never touches running clients. The plugin talks to
it as any client does: the control program with commands on stdin
(:class:`deviceplugin.mpsdaemon.MpsDaemon`). Each ``interval_s`` it asks ``get_server_list``:

- answered: MPS resources are healthy, and the daemon's defaults follow the largest live grant per
  GPU: ``set_default_device_pinned_mem_limit <index> <GiB>G`` per device and
  ``set_default_active_thread_percentage`` (a node-wide default in MPS: the largest core grant on
  any GPU). Clients narrow these with their own variables. On the DRA driver's MPS GPUs the grants
  are the shares its checkpoint records (:mod:`deviceplugin.drashares`; where it cannot tell, the
  whole card and 100 %).
- not answered in time, but the daemon process is alive (slow: a CPU-starved node) or starting:
  nothing changes; the next questions wait twice as long (up to ``SLOW_PATIENCE_CAP_S``) until it
  answers quickly again. No second daemon, no unhealthy device.
- gone (no daemon process, or one that no client can reach: its socket unlinked or another listener
  on ``control``, as a client container holding the pipe directory can do): started again, once,
  under the supervisor lock, after stopping the unreachable one (``quit``, SIGTERM, SIGKILL) and
  removing a socket that is not the daemon's; a daemon that refuses to start because another holds
  the instance lock unseen has that one found by its lock and stopped, then is started again. Only
  when it cannot be started are the MPS resources reported unhealthy (they cannot serve); the next
  start is tried after a jittered backoff (:mod:`tessera.backoff`).
- an answer through a control socket that is not the daemon's (socket not the MPS user's, or the
  connection's peer not the daemon's pid) is no answer.
"""

from __future__ import annotations

import os
import subprocess
import time

from deviceplugin.drashares import DraMpsShares
from deviceplugin.mpsdaemon import ALREADY_RUNNING, DaemonState, Listener, MpsDaemon, lock_holders
from deviceplugin.rm import NodeDevices
from tessera.backoff import Backoff
from tessera.config import DevicePluginConfig
from tessera.log import get_logger
from tessera.periodic import PeriodicWorker

log = get_logger("deviceplugin")

ANSWER_TIMEOUT_S = 3.0       # a daemon that answers within this is well
SLOW_PATIENCE_CAP_S = 30.0   # ... a slow one is given up to this, doubling from ANSWER_TIMEOUT_S
START_WAIT_S = 30.0          # a started daemon shows up (pid file or socket) within this, or counts as not started
RESTART_BASE_S, RESTART_CAP_S = 1.0, 60.0  # after a start that failed


class MpsSupervisor(PeriodicWorker):
    """Keeps the MPS control daemon running (one per pipe directory) and its defaults at the largest
    live grants, the device plugin's (``rm``) and the DRA driver's MPS shares (``dra``, where the node
    has DRA MPS GPUs); see the module docstring."""

    def __init__(self, binary: str, config: DevicePluginConfig, rm: NodeDevices, interval_s: float = 1.0,
                 answer_timeout_s: float = ANSWER_TIMEOUT_S, dra: DraMpsShares | None = None) -> None:
        super().__init__("dp-mps", interval_s, "mps_supervision_failed", log)
        self.config = config
        self.rm = rm
        self.dra = dra
        user = config.mps_user if os.geteuid() == 0 and config.mps_user != 0 else None
        self.daemon = MpsDaemon(binary, config.mps_pipe_directory, config.mps_log_directory,
                                config.mps_shm_directory, user)
        self._sent: dict[str, str] = {}
        self._pid: int | None = None  # the daemon the defaults were sent to
        self._patience = Backoff(base_s=answer_timeout_s, cap_s=max(answer_timeout_s, SLOW_PATIENCE_CAP_S),
                                 jitter=0.0)
        self._restarts = Backoff(base_s=RESTART_BASE_S, cap_s=RESTART_CAP_S)
        self.starts = 0  # daemons this supervisor started

    def start(self) -> None:
        self.check()  # before the resources register: their health is right from the first listing
        super().start()

    def tick(self) -> None:
        self.check()

    def serving(self) -> bool:
        """Whether the node has an MPS GPU now: one of the plugin's in mps mode (a node label or a config
        reload can make one at any time), or one of the DRA driver's."""
        return self.dra is not None or "mps" in self.rm.active_modes().values()

    def check(self) -> DaemonState | None:
        """One round; returns None when the daemon answered (or no GPU is in mps mode), else what it is doing."""
        if not self.serving():
            return None
        asked = time.monotonic()
        try:
            self.daemon.control("get_server_list", timeout_s=self._patience.ceiling())
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            return self._not_answered(str(err))
        if self.daemon.listener() not in (Listener.DAEMON, Listener.BUSY):
            return self._not_answered("the control socket is not the daemon's")
        self._answered(time.monotonic() - asked)
        return None

    def _answered(self, took_s: float) -> None:
        if took_s < self._patience.base_s and self._patience.failures:  # quick again: back to the normal wait
            log.info("mps_daemon_answering_again", pid=self.daemon.pid(), pipe=self.config.mps_pipe_directory)
            self._patience.reset()
        self._restarts.reset()
        if self.rm.set_mps_down(None):
            log.info("mps_daemon_ready", pipe=self.config.mps_pipe_directory)
        pid = self.daemon.pid()
        if pid != self._pid:  # another daemon than the one that has our defaults
            self._pid = pid
            self._sent.clear()
        self._apply_defaults()

    def _not_answered(self, problem: str) -> DaemonState:
        state = self.daemon.state()
        if state is not DaemonState.GONE:
            if not self._patience.failures:
                log.warning("mps_daemon_slow", state=state.value, reason=problem, pid=self.daemon.pid(),
                            pipe=self.config.mps_pipe_directory)
            self._patience.failed()  # the next question waits longer
            return state
        self._patience.reset()
        if self._restarts.due():
            self._restart(problem)
        return state

    def _restart(self, problem: str) -> None:
        with self.daemon.launch_lock() as held:
            if not held:
                log.info("mps_daemon_start_elsewhere", pipe=self.config.mps_pipe_directory)
                return  # another supervisor of this pipe directory is starting it
            if self.daemon.state() is not DaemonState.GONE:
                return  # it came back while we took the lock
            log.warning("mps_daemon_gone", reason=problem, pipe=self.config.mps_pipe_directory)
            self._sent.clear()
            self._stop_unreachable(self.daemon.daemons())
            failure = self._launch()
            if failure == ALREADY_RUNNING and self.daemon.state() is DaemonState.GONE:
                # another daemon holds the instance lock, but no client can reach it: stop it, start ours
                self._stop_unreachable(lock_holders(self.daemon.pipe_dir, self.daemon.binary))
                failure = self._launch()
            if failure in (None, ALREADY_RUNNING):  # ours, or one just starting that we did not see
                failure = self._wait_started()
        if failure is None:
            self._restarts.reset()
            if self.rm.set_mps_down(None):
                log.info("mps_daemon_ready", pipe=self.config.mps_pipe_directory)
            return
        delay = self._restarts.failed()
        if self.rm.set_mps_down(f"MPS control daemon gone and not restarted: {failure}"):
            log.error("mps_daemon_down", reason=failure, retry_in_s=round(delay, 1),
                      pipe=self.config.mps_pipe_directory)

    def _stop_unreachable(self, pids: list[int]) -> None:
        """Stop the daemons ``pids`` that no client can reach (one pipe directory, one daemon), and
        remove a control socket that is not a daemon's, so the next daemon binds its own."""
        if pids:
            log.warning("mps_daemon_unreachable_stopped", pids=pids, pipe=self.config.mps_pipe_directory)
            if not self.daemon.stop(pids=pids):
                log.error("mps_daemon_not_stopped", pids=pids, pipe=self.config.mps_pipe_directory)
        self.daemon.clear_socket()

    def _launch(self) -> str | None:
        failure = self.daemon.launch()
        if failure is None:
            self.starts += 1
            log.info("mps_daemon_started", binary=self.daemon.binary, user=self.daemon.user)
        return failure

    def _wait_started(self) -> str | None:
        """None once the started daemon is alive (pid file) or listening; else why not."""
        deadline = time.monotonic() + START_WAIT_S
        while self.daemon.state() is DaemonState.GONE:
            if time.monotonic() >= deadline or self._stop.is_set():
                return f"started, but no daemon process or socket in {self.config.mps_pipe_directory}"
            time.sleep(0.05)
        return None

    def _apply_defaults(self) -> None:
        largest = self.rm.largest_mps_grants()
        gpus = {g.index: g for g in self.rm.gpu_infos()}
        if self.dra is not None:  # the DRA driver's GPUs: not the device plugin's, so not in rm
            for index, (core, mem) in self.dra.largest().items():
                own_core, own_mem = largest.get(index, (0, 0))
                largest[index] = (max(own_core, core), max(own_mem, mem))
            gpus.update((g.index, g) for g in self.dra.gpus)
        wanted: dict[str, str] = {}
        cores = [c for c, _ in largest.values() if c]
        wanted["set_default_active_thread_percentage"] = str(max(cores) if cores else 100)
        for index, (_, mem) in sorted(largest.items()):
            gpu = gpus[index]
            gib = mem or gpu.memory_total_mib // 1024
            wanted[f"set_default_device_pinned_mem_limit {index}"] = f"{gib}G"
        commands = [f"{k} {v}" for k, v in wanted.items() if self._sent.get(k) != v]
        if not commands:
            return
        try:
            self.daemon.control(*commands, timeout_s=self._patience.ceiling() * len(commands))
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            log.warning("mps_defaults_failed", reason=str(err))
            return
        self._sent.update(wanted)
        log.info("mps_defaults_set", commands=commands)
