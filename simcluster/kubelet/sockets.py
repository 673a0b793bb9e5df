"""gRPC servers and channels on unix sockets, as the kubelet uses them."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc


def remove_socket(path: str) -> None:
    """Remove a socket file if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def serve_unix(path: str, add_servicer: Callable[[grpc.Server], None], workers: int = 8) -> grpc.Server:
    """Start a gRPC server on the unix socket ``path`` (a stale file there is removed first)."""
    remove_socket(path)
    server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simkubelet-grpc"))
    add_servicer(server)
    if server.add_insecure_port(f"unix://{path}") == 0:
        raise OSError(f"cannot listen on unix socket {path}")
    server.start()
    return server


def stop_server(server: grpc.Server, path: str) -> None:
    """Stop a server at once (in-flight calls are cancelled) and remove its socket file."""
    server.stop(grace=None).wait(timeout=5)
    remove_socket(path)


def dial_unix(path: str, timeout_s: float) -> grpc.Channel:
    """Connect to a unix socket and wait until the channel is ready (the kubelet dials blocking)."""
    channel = grpc.insecure_channel(f"unix://{path}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError as err:
        channel.close()
        raise ConnectionError(f"failed to dial device plugin at {path}: timed out after {timeout_s}s") from err
    return channel
