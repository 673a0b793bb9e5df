"""Allocate's floor: a gRPC device plugin that answers every Allocate with one fixed answer.

    .venv/bin/python bench/allocate_floor.py --socket PATH --answer-file FILE

It serves the kubelet's device-plugin API (``proto/deviceplugin``) on a unix socket, as
``deviceplugin.server`` does (``grpc.server`` with eight worker threads), and answers Allocate with the
AllocateResponse serialized in FILE: the answer Tessera's plugin gave to the same request, so both
carry the same bytes. No allocator, no devices: what is left is what the gRPC call costs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api  # noqa: E402


class EchoPlugin(deviceplugin_grpc.DevicePluginServicer):
    """Every Allocate answered with ``answer``."""

    def __init__(self, answer: api.AllocateResponse) -> None:
        self.answer = answer

    def GetDevicePluginOptions(self, request, context):  # noqa: N802
        return api.DevicePluginOptions()

    def Allocate(self, request, context):  # noqa: N802
        return self.answer


def serve(socket_path: str, answer: api.AllocateResponse) -> grpc.Server:
    """The echo plugin on ``socket_path``, started."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    deviceplugin_grpc.add_DevicePluginServicer_to_server(EchoPlugin(answer), server)
    server.add_insecure_port(f"unix://{socket_path}")
    server.start()
    return server


def spawn_echo(socket_path: Path, answer: api.AllocateResponse, timeout_s: float = 30.0) -> subprocess.Popen:
    """The echo plugin in its own process (as Tessera's plugin runs in its own), once its socket answers."""
    answer_file = socket_path.with_suffix(".answer")
    answer_file.write_bytes(answer.SerializeToString())
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--socket", str(socket_path),
                             "--answer-file", str(answer_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise TimeoutError(f"the Allocate echo did not serve {socket_path}")
        time.sleep(0.01)
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--answer-file", required=True, help="a serialized AllocateResponse")
    args = parser.parse_args(argv)
    answer = api.AllocateResponse.FromString(Path(args.answer_file).read_bytes())
    server = serve(args.socket, answer)  # kept: a server no one holds is stopped when collected
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
