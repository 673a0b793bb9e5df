#!/usr/bin/env python3
"""A stand-in for ``nvidia-cuda-mps-control`` on machines without a GPU: same flags, same commands.

    nvidia-cuda-mps-control -d      # start the control daemon in the background
    nvidia-cuda-mps-control -f      # ... in the foreground (a DaemonSet container)
    echo get_server_list | nvidia-cuda-mps-control   # a client: commands on stdin, answers on stdout

Like the real one it finds the daemon through ``CUDA_MPS_PIPE_DIRECTORY`` (the unix socket
``control`` in it, its pid in ``nvidia-cuda-mps-control.pid`` while it runs, ``control_lock``) and
logs to ``CUDA_MPS_LOG_DIRECTORY`` (``control.log``). Like the real one, a second daemon on the same
pipe directory exits 1 with ``An instance of this daemon is already running`` (an flock on
``control_lock``, held for the daemon's life: a killed daemon's directory is taken over by the
next). It keeps what the control commands set: ``set_default_active_thread_percentage``,
``get_default_active_thread_percentage``, ``set_default_device_pinned_mem_limit <dev> <value>``,
``get_default_device_pinned_mem_limit <dev>``, ``get_server_list``, ``quit``; SIGTERM ends it as
``quit`` does. ``TESSERA_FAKE_MPS_ANSWER_DELAY_S`` (read at start) makes it answer each command
that many seconds late: a daemon on a CPU-starved node. Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import time

PIPE_ENV, LOG_ENV = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"
DELAY_ENV = "TESSERA_FAKE_MPS_ANSWER_DELAY_S"
DEFAULT_PIPE, DEFAULT_LOG = "/tmp/nvidia-mps", "/var/log/nvidia-mps"
PID_FILE, LOCK_FILE = "nvidia-cuda-mps-control.pid", "control_lock"
ALREADY_RUNNING = "An instance of this daemon is already running"


def _dirs() -> tuple[str, str]:
    return os.environ.get(PIPE_ENV, DEFAULT_PIPE), os.environ.get(LOG_ENV, DEFAULT_LOG)


class _State:
    def __init__(self) -> None:
        self.thread_pct = "100.0"
        self.mem_limits: dict[str, str] = {}

    def answer(self, line: str) -> tuple[str, bool]:
        words = line.split()
        if not words:
            return "", False
        cmd, args = words[0], words[1:]
        if cmd == "get_server_list":
            return "", False  # no MPS server until a client connects
        if cmd == "set_default_active_thread_percentage" and len(args) == 1:
            try:
                value = float(args[0])
            except ValueError:
                return "Invalid percentage", False
            if not 0 < value <= 100:
                return "Invalid percentage", False
            self.thread_pct = f"{value:.1f}"
            return self.thread_pct, False
        if cmd == "get_default_active_thread_percentage" and not args:
            return self.thread_pct, False
        if cmd == "set_default_device_pinned_mem_limit" and len(args) == 2:
            value = args[1]
            if not value[:-1].isdigit() or value[-1] not in "MG":
                return "Invalid memory limit", False
            self.mem_limits[args[0]] = value
            return "", False
        if cmd == "get_default_device_pinned_mem_limit" and len(args) == 1:
            return self.mem_limits.get(args[0], "0"), False
        if cmd == "quit":
            return "", True
        return f"Unrecognized command: {line}", False


def _instance_lock(pipe_dir: str) -> int | None:
    """The pipe directory's instance lock, held (an open descriptor) or None where a daemon holds it."""
    os.makedirs(pipe_dir, exist_ok=True)
    fd = os.open(os.path.join(pipe_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _serve(pipe_dir: str, log_dir: str) -> int:
    """Serve the control socket until ``quit`` or SIGTERM; the caller holds the instance lock."""
    os.makedirs(log_dir, exist_ok=True)
    path, pid_file = os.path.join(pipe_dir, "control"), os.path.join(pipe_dir, PID_FILE)
    _remove(path)  # a killed daemon's socket: ours now, the lock says nobody else serves here
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    with open(pid_file, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    delay = float(os.environ.get(DELAY_ENV) or 0)
    log = open(os.path.join(log_dir, "control.log"), "a", buffering=1)
    log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] Control daemon started (fake), pid {os.getpid()}\n")

    def end(*_: object) -> None:
        log.write("Control daemon exiting\n")
        server.close()
        _remove(path, pid_file)

    def on_sigterm(*_: object) -> None:
        end()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    state = _State()
    while True:
        conn, _ = server.accept()
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            line = data.decode(errors="replace").strip()
            if not line:
                continue  # a connection that only looked (is anybody there?)
            time.sleep(delay)
            reply, stop = state.answer(line)
            log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] CMD {line}\n")
            try:
                conn.sendall((reply + "\n").encode())
            except OSError:
                pass  # the client gave up waiting
        if stop:
            end()
            return 0


def _client(pipe_dir: str) -> int:
    path = os.path.join(pipe_dir, "control")
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            print("Cannot find MPS control daemon process", file=sys.stderr)
            return 1
        with sock:
            sock.sendall((line + "\n").encode())
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        text = reply.decode().rstrip("\n")
        if text:
            print(text)
    return 0


def main(argv: list[str]) -> int:
    pipe_dir, log_dir = _dirs()
    if "-f" in argv or "-d" in argv:
        if _instance_lock(pipe_dir) is None:  # kept open (and locked) for the daemon's life
            print(ALREADY_RUNNING, file=sys.stderr)
            os.makedirs(log_dir, exist_ok=True)
            with open(os.path.join(log_dir, "control.log"), "a") as log:
                log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] Second daemon refused (fake): {ALREADY_RUNNING}\n")
            return 1
    if "-f" in argv:
        return _serve(pipe_dir, log_dir)
    if "-d" in argv:
        if os.fork():
            return 0
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os._exit(_serve(pipe_dir, log_dir))
    return _client(pipe_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
