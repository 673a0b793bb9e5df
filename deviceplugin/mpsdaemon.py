"""The MPS control daemon as a process: asking it, telling slow from gone, starting and stopping it.

What the real ``nvidia-cuda-mps-control -d`` leaves in its pipe directory (``CUDA_MPS_PIPE_DIRECTORY``),
and what is read here: ``nvidia-cuda-mps-control.pid`` (its pid, removed when it exits), ``control``
(the unix socket clients connect to) and ``control_lock``; a second ``-d`` on the same directory exits
with ``An instance of this daemon is already running``. A daemon that does not answer a command in
time is:

- ``slow`` when its process is alive and its control socket takes a connection (a CPU-starved node:
  wait for it, never start another, never call its devices unhealthy);
- ``starting`` when its process is alive but nothing listens yet;
- ``gone`` when no daemon process is alive and nothing listens on the socket (killed, crashed,
  never started): start one.

Starting happens under ``tessera-mps-supervisor.lock`` in the log directory (not the pipe directory,
which MPS clients see), checked again once held, so two plugin processes on one node never start
two daemons; the daemon's own lock refuses a second instance anyway.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

PID_FILE = "nvidia-cuda-mps-control.pid"
CONTROL_SOCKET = "control"
INSTANCE_LOCK = "control_lock"
ALREADY_RUNNING = "An instance of this daemon is already running"
SUPERVISOR_LOCK = "tessera-mps-supervisor.lock"
_PID_MAX = 1 << 22  # Linux's largest pid_max


class DaemonState(enum.Enum):
    """What a daemon that did not answer in time is doing (see the module docstring)."""

    SLOW = "slow"
    STARTING = "starting"
    GONE = "gone"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    try:  # a zombie nobody reaped yet is not alive
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rpartition(b")")[2].split()[:1] != [b"Z"]
    except OSError:
        return True


def _runs(pid: int, binary: str) -> bool:
    """Whether ``pid`` runs ``binary`` (its argv names it): a pid file's pid reused by another program
    is not the daemon. True where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return True
    name = os.path.basename(binary).encode()
    return any(os.path.basename(arg) == name for arg in argv[:3])


def daemon_pid(pipe_dir: str, binary: str) -> int | None:
    """The pid in the pipe directory's pid file, if that process is alive and runs ``binary``."""
    try:
        with open(os.path.join(pipe_dir, PID_FILE), "rb") as fh:
            text = fh.read(32).decode("ascii", "replace").strip()
    except OSError:
        return None
    if not text.isdigit() or not 1 < int(text) < _PID_MAX:
        return None  # anything but a plain pid is not trusted: the directory is shared with clients
    pid = int(text)
    return pid if _alive(pid) and _runs(pid, binary) else None


def pipe_accepts(pipe_dir: str) -> bool:
    """Whether something listens on the control socket: a connection is taken, or queued on a full
    backlog (a busy daemon). Nothing is sent; the connection is closed at once."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.connect(os.path.join(pipe_dir, CONTROL_SOCKET))
        return True
    except BlockingIOError:
        return True  # EAGAIN: the backlog is full, someone is there
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EINPROGRESS):
            return True
        return False  # ECONNREFUSED (a stale socket), ENOENT, ENOTSOCK, EACCES ...
    finally:
        sock.close()


@dataclass
class MpsDaemon:
    """One node's MPS control daemon, reached through ``binary`` (the control program)."""

    binary: str
    pipe_dir: str
    log_dir: str
    shm_dir: str | None = None
    user: int | None = None  # start it as this uid (when running as root)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": self.pipe_dir, "CUDA_MPS_LOG_DIRECTORY": self.log_dir}

    def control(self, *commands: str, timeout_s: float = 3.0) -> str:
        """Send commands; the answers, or OSError / RuntimeError / subprocess.TimeoutExpired."""
        result = subprocess.run([self.binary], input="\n".join(commands) + "\n", env=self.env, capture_output=True,
                                text=True, timeout=timeout_s)
        if result.returncode != 0:
            raise RuntimeError((result.stderr or result.stdout).strip() or f"exit status {result.returncode}")
        return result.stdout

    def pid(self) -> int | None:
        """The live daemon's pid (from its pid file), or None."""
        return daemon_pid(self.pipe_dir, self.binary)

    def state(self) -> DaemonState:
        """Slow, starting or gone: for a daemon that did not answer (see the module docstring)."""
        listening = pipe_accepts(self.pipe_dir)
        if listening:
            return DaemonState.SLOW
        return DaemonState.STARTING if self.pid() is not None else DaemonState.GONE

    @contextlib.contextmanager
    def launch_lock(self) -> Iterator[bool]:
        """Hold the supervisor lock for this pipe directory; yields False where another process holds it."""
        os.makedirs(self.log_dir, exist_ok=True)
        fd = os.open(os.path.join(self.log_dir, SUPERVISOR_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def launch(self, timeout_s: float = 30.0) -> str | None:
        """Start the daemon (``-d``: detached, in its own session): None when started,
        :data:`ALREADY_RUNNING` when a daemon already runs on this pipe directory, else why not."""
        # The daemon and its servers run as the MPS user (subprocess switches user without a
        # preexec_fn, which is unsafe in a threaded process).
        as_user = {"user": self.user, "group": self.user} if self.user is not None else {}
        try:
            for folder in (self.pipe_dir, self.log_dir, self.shm_dir):
                if folder:
                    os.makedirs(folder, exist_ok=True)
                    if self.user is not None:
                        os.chown(folder, self.user, self.user)  # the daemon, as the MPS user, writes there
            result = subprocess.run([self.binary, "-d"], env=self.env, start_new_session=True, **as_user,
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.SubprocessError) as err:
            return str(err)
        said = (result.stderr + result.stdout).strip()
        if result.returncode == 0:
            return None
        return ALREADY_RUNNING if ALREADY_RUNNING in said else said or f"exit status {result.returncode}"

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the daemon: ``quit``, then SIGTERM, then SIGKILL, each given a quarter of ``timeout_s``
        (and a daemon still starting, holding its instance lock without a pid file yet, a quarter to
        show up). True when no daemon is left on this pipe directory."""
        part = timeout_s / 4
        _wait_for(lambda: self.pid() is not None or not self._instance_locked(), part)
        pid = self.pid()
        if pid is None and not pipe_accepts(self.pipe_dir):
            return not self._instance_locked()
        with contextlib.suppress(OSError, RuntimeError, subprocess.SubprocessError):
            self.control("quit", timeout_s=part)
        if pid is None:
            return _wait_for(lambda: not pipe_accepts(self.pipe_dir), part)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            if _wait_for(lambda: not _alive(pid), part):
                return True
        return False

    def _instance_locked(self) -> bool:
        """Whether a daemon holds the pipe directory's ``control_lock`` (the fake does, from before
        its pid file is written until it exits)."""
        try:
            fd = os.open(os.path.join(self.pipe_dir, INSTANCE_LOCK), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)


def _wait_for(done, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
