"""The MPS control daemon as a process: asking it, telling slow from gone, starting and stopping it.

What the real ``nvidia-cuda-mps-control -d`` leaves in its pipe directory (``CUDA_MPS_PIPE_DIRECTORY``),
and what is read here: ``nvidia-cuda-mps-control.pid`` (its pid, removed when it exits), ``control``
(the unix socket clients connect to) and ``control_lock``; a second ``-d`` on the same directory exits
with ``An instance of this daemon is already running``. A daemon that does not answer a command in
time is:

- ``slow`` when its process is alive and its control socket takes a connection (a CPU-starved node:
  wait for it, never start another, never call its devices unhealthy);
- ``starting`` when its process is alive, younger than ``start_grace_s``, and nothing listens yet;
- ``gone`` when no daemon process is alive (killed, crashed, never started), or when one is alive but
  clients cannot reach it (its socket unlinked, or another listener bound on ``control``): start one,
  stopping the unreachable one first.

The pipe directory is shared with every MPS client container (read-write, as NVIDIA's device plugin
mounts it), so nothing in it is believed on its word: the pid file counts only when it holds a plain
pid of a live process running the control binary (else the daemon is found in the process table:
the control binary, ``-d``/``-f``, holding this directory's ``control_lock`` open), and a listener on
``control`` is the daemon's only when the socket file is owned by the MPS user and the connection's
peer (``SO_PEERCRED``) is that daemon's pid (or, where no connection is taken, a full backlog, the
listening socket bound to that file, found by ``sock_diag``, is one the daemon holds open).

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
import stat
import struct
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


class Listener(enum.Enum):
    """Who is on the control socket."""

    DAEMON = "daemon"  # the daemon: socket owned by the MPS user, connection's peer is the daemon's pid
    BUSY = "busy"      # the daemon's, with a full backlog (no connection to ask, so found by sock_diag)
    OTHER = "other"    # someone else's socket or listener (a client container's)
    NONE = "none"      # no socket, or a stale one


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
    """The pid in the pipe directory's pid file, if that process is alive, runs ``binary`` and serves
    this pipe directory."""
    try:
        with open(os.path.join(pipe_dir, PID_FILE), "rb") as fh:
            text = fh.read(32).decode("ascii", "replace").strip()
    except OSError:
        return None
    if not text.isdigit() or not 1 < int(text) < _PID_MAX:
        return None  # anything but a plain pid is not trusted: the directory is shared with clients
    pid = int(text)
    # a live process running the binary that serves this directory (not another directory's daemon)
    return pid if _alive(pid) and _runs(pid, binary) and _serves(pid, pipe_dir) is not False else None


def _argv(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def _age_s(pid: int) -> float | None:
    """How long ``pid`` has run, or None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            started = int(fh.read().rpartition(b")")[2].split()[19])
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - started / os.sysconf("SC_CLK_TCK")


def _serves(pid: int, pipe_dir: str) -> bool | None:
    """Whether daemon ``pid`` serves ``pipe_dir``: it holds the directory's ``control_lock`` open (also
    when that was unlinked) or was started for it (``CUDA_MPS_PIPE_DIRECTORY``); None where /proc
    cannot tell (another user's process, without privileges)."""
    root = os.path.realpath(pipe_dir)
    lock = os.path.join(root, INSTANCE_LOCK)
    told = False
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            told = True
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in (lock, lock + " (deleted)"):
                    return True
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/environ", "rb") as fh:
            environ = fh.read().split(b"\0")
        told = True
        pipe = next((e.split(b"=", 1)[1] for e in environ if e.startswith(b"CUDA_MPS_PIPE_DIRECTORY=")), None)
        if pipe is not None and os.path.realpath(pipe.decode(errors="replace")) == root:
            return True
    return False if told else None


def lock_holders(pipe_dir: str, binary: str) -> list[int]:
    """Daemons of ``pipe_dir`` from the process table, whatever the pid file says: processes running
    ``binary`` as a daemon (``-d`` or ``-f``) that hold the directory's ``control_lock`` open (also
    when it was unlinked) or were started for this pipe directory (``CUDA_MPS_PIPE_DIRECTORY``)."""
    root = os.path.realpath(pipe_dir)
    name = os.path.basename(binary).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        argv = _argv(pid)
        if not any(os.path.basename(a) == name for a in argv[:3]) or not {b"-d", b"-f"} & set(argv):
            continue
        if not _alive(pid):
            continue
        if _serves(pid, root):  # not where /proc cannot tell: never stop another directory's daemon
            found.append(pid)
    return sorted(found)


_SOCK_DIAG_BY_FAMILY, _NLM_DUMP_REQUEST = 20, 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_UDIAG_SHOW_VFS, _UNIX_DIAG_VFS, _TCP_LISTEN = 0x2, 1, 10


def listening_socket_at(path_stat: os.stat_result) -> int | None:
    """The socket inode of the unix socket listening on the socket file ``path_stat`` (matched by the
    file's device and inode through ``sock_diag``: only sockets of this network namespace), 0 where
    none is, None where the kernel cannot tell (``sock_diag`` for unix sockets unavailable)."""
    kernel_dev = (os.major(path_stat.st_dev) << 20) | os.minor(path_stat.st_dev)  # the kernel's dev_t
    request = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 1 << _TCP_LISTEN, 0, _UDIAG_SHOW_VFS, 0, 0)
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_DUMP_REQUEST, 1, 0)
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)  # NETLINK_SOCK_DIAG
    except (OSError, AttributeError):
        return None
    with sock:
        try:
            sock.settimeout(2.0)
            sock.sendall(header + request)
            while True:
                data = sock.recv(65536)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind, _, _, _ = struct.unpack_from("=IHHII", data, offset)
                    if kind == _NLMSG_DONE:
                        return 0
                    if kind == _NLMSG_ERROR or length < 16:
                        return None
                    body, end = offset + 16, offset + length
                    inode = struct.unpack_from("=BBBBIII", data, body)[4]
                    attr = body + 16
                    while attr + 4 <= end:
                        attr_len, attr_type = struct.unpack_from("=HH", data, attr)
                        if attr_len < 4:
                            break
                        if attr_type == _UNIX_DIAG_VFS and attr_len >= 12:
                            vfs_ino, vfs_dev = struct.unpack_from("=II", data, attr + 4)
                            if vfs_ino == path_stat.st_ino and vfs_dev == kernel_dev:
                                return inode
                        attr += (attr_len + 3) & ~3
                    offset += (length + 3) & ~3
        except (OSError, struct.error):
            return None


def holds_socket(pid: int, inode: int) -> bool:
    """Whether ``pid`` has the socket ``inode`` open."""
    want = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                return True
    return False


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
    start_grace_s: float = 30.0  # a daemon younger than this without its socket is still starting

    @property
    def owner(self) -> int:
        """The uid the daemon runs as, which owns its control socket."""
        return self.user if self.user is not None else os.geteuid()

    @property
    def env(self) -> dict[str, str]:
        """The daemon's environment: its folders, and CUDA's device numbers in PCI bus order, NVML's order,
        so ``set_default_device_pinned_mem_limit <index>`` caps the GPU NVML numbers ``index`` (CUDA's
        default order is fastest first, which differs on a node of mixed GPU models)."""
        env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": self.pipe_dir, "CUDA_MPS_LOG_DIRECTORY": self.log_dir,
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        env.pop("CUDA_VISIBLE_DEVICES", None)  # every GPU, numbered as NVML does
        return env

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

    def daemons(self) -> list[int]:
        """Live daemons of this pipe directory: the pid file's, else those in the process table."""
        pid = self.pid()
        return [pid] if pid is not None else lock_holders(self.pipe_dir, self.binary)

    def listener(self) -> Listener:
        """Who listens on the control socket (see :class:`Listener`). Nothing is sent; the
        connection is closed at once."""
        path = os.path.join(self.pipe_dir, CONTROL_SOCKET)
        try:
            info = os.lstat(path)
        except OSError:
            return Listener.NONE
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != self.owner:
            return Listener.OTHER
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        busy = False
        try:
            sock.connect(path)
            peer, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                               struct.calcsize("3i")))
        except OSError as err:
            if not isinstance(err, BlockingIOError) and err.errno not in (errno.EAGAIN, errno.EINPROGRESS):
                return Listener.NONE  # ECONNREFUSED (a stale socket), ENOENT ...
            busy, peer, uid = True, 0, self.owner  # EAGAIN: the backlog is full, someone is there
        finally:
            sock.close()
        daemons = self.daemons()
        if not busy and uid == self.owner and peer in daemons:
            return Listener.DAEMON
        # No peer to ask (a full backlog), or the peer is not the daemon's pid (a daemon that listened
        # before it detached): the daemon's only where the socket bound to this file is one it holds.
        inode = listening_socket_at(info)
        if inode and any(holds_socket(pid, inode) for pid in daemons):
            return Listener.BUSY if busy else Listener.DAEMON
        if inode is None and busy and daemons:
            return Listener.BUSY  # the kernel cannot tell: a busy socket of the MPS user's is not restarted
        return Listener.OTHER

    def state(self) -> DaemonState:
        """Slow, starting or gone: for a daemon that did not answer (see the module docstring)."""
        listener = self.listener()
        if listener is Listener.DAEMON:
            return DaemonState.SLOW
        daemons = self.daemons()
        if not daemons:
            return DaemonState.GONE
        if listener is Listener.BUSY:
            return DaemonState.SLOW
        if any((age := _age_s(pid)) is None or age < self.start_grace_s for pid in daemons):
            return DaemonState.STARTING
        return DaemonState.GONE  # alive, but no client can reach it: to be stopped and started again

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

    def stop(self, timeout_s: float = 10.0, pids: list[int] | None = None) -> bool:
        """Stop the daemon: ``quit`` (only where the control socket is the daemon's), then SIGTERM,
        then SIGKILL, each given a quarter of ``timeout_s`` (and a daemon still starting, holding its
        instance lock without a pid file yet, a quarter to show up). The daemon is the pid file's, or
        where that is missing or lies, whatever holds the instance lock. True when no daemon is left
        on this pipe directory. ``pids``: stop these daemons (found by the caller) as well."""
        part = timeout_s / 4
        _wait_for(lambda: pids or self.daemons() or not self._instance_locked(), part)
        pids = sorted(set(pids or []) | set(self.daemons()))
        listener = self.listener()
        if not pids and listener is Listener.NONE:
            return not self._instance_locked()
        if listener in (Listener.DAEMON, Listener.BUSY) or not pids:
            with contextlib.suppress(OSError, RuntimeError, subprocess.SubprocessError):
                self.control("quit", timeout_s=part)
        if not pids:
            return _wait_for(lambda: not pipe_accepts(self.pipe_dir), part)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                if sig is not None and _alive(pid):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
            if _wait_for(lambda: not any(_alive(pid) for pid in pids), part):
                return not self._instance_locked() or not lock_holders(self.pipe_dir, self.binary)
        return False

    def clear_socket(self) -> None:
        """Remove a ``control`` that is not a live daemon's (a stale or foreign one), so the next daemon
        binds its own there."""
        if self.listener() in (Listener.OTHER, Listener.NONE):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.pipe_dir, CONTROL_SOCKET))

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
