"""A device plugin stand-in, run as its own process by the tests: real gRPC on a real unix socket.

    python fake_device_plugin.py --plugin-dir DIR --resource example.com/gpu \
        --devices GPU-0@0,GPU-1@0,GPU-2 [--preferred GPU-2,GPU-0] [--fail-allocate MESSAGE] \
        [--control FILE] [--endpoint NAME]

``ID@N`` puts a device on NUMA node N. ``--preferred`` turns GetPreferredAllocation on and answers
the listed IDs that are available, in that order. ``--control`` names a JSON file
(``{"unhealthy": ["GPU-1"]}``) read whenever it changes. Like NVIDIA's plugin it (re)starts its
server and registers each time ``kubelet.sock`` appears anew, and prints ``REGISTERED <n>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from tessera.kubeletapi import API_VERSION, HEALTHY, KUBELET_SOCKET_NAME, UNHEALTHY
from tessera.kubeletapi import deviceplugin_grpc, deviceplugin_pb2 as api


class Devices:
    """The plugin's devices and their health; ``version`` moves on every change."""

    def __init__(self, spec: str) -> None:
        self.numa: dict[str, int | None] = {}
        for item in filter(None, spec.split(",")):
            device_id, _, node = item.partition("@")
            self.numa[device_id] = int(node) if node else None
        self.unhealthy: set[str] = set()
        self.version = 0
        self.changed = threading.Condition()

    def set_unhealthy(self, ids: set[str]) -> None:
        with self.changed:
            if ids != self.unhealthy:
                self.unhealthy = ids
                self.version += 1
                self.changed.notify_all()

    def listing(self) -> list[api.Device]:
        result = []
        for device_id, node in self.numa.items():
            device = api.Device(ID=device_id, health=UNHEALTHY if device_id in self.unhealthy else HEALTHY)
            if node is not None:
                device.topology.nodes.add(ID=node)
            result.append(device)
        return result


class FakePlugin(deviceplugin_grpc.DevicePluginServicer):
    def __init__(self, devices: Devices, preferred: list[str], fail_allocate: str,
                 allocate_delay_s: float = 0.0) -> None:
        self.devices = devices
        self.preferred = preferred
        self.fail_allocate = fail_allocate
        self.allocate_delay_s = allocate_delay_s

    def GetDevicePluginOptions(self, request, context):  # noqa: N802
        return api.DevicePluginOptions(get_preferred_allocation_available=bool(self.preferred))

    def ListAndWatch(self, request, context):  # noqa: N802
        seen = -1
        while context.is_active():
            with self.devices.changed:
                self.devices.changed.wait_for(lambda: self.devices.version != seen, timeout=0.1)
                if self.devices.version == seen:
                    continue
                seen = self.devices.version
                listing = self.devices.listing()
            yield api.ListAndWatchResponse(devices=listing)

    def GetPreferredAllocation(self, request, context):  # noqa: N802
        responses = []
        for req in request.container_requests:
            available = set(req.available_deviceIDs)
            ids = [d for d in self.preferred if d in available][: req.allocation_size]
            responses.append(api.ContainerPreferredAllocationResponse(deviceIDs=ids))
        return api.PreferredAllocationResponse(container_responses=responses)

    def Allocate(self, request, context):  # noqa: N802
        time.sleep(self.allocate_delay_s)   # a plugin slowed by a busy machine
        if self.fail_allocate:
            context.abort(grpc.StatusCode.UNKNOWN, self.fail_allocate)
        responses = []
        for req in request.container_requests:
            ids = ",".join(req.devices_ids)
            responses.append(api.ContainerAllocateResponse(
                envs={"FAKE_VISIBLE_DEVICES": ids},
                annotations={"tessera.io/fake-grant": ids, "other.io/note": "dropped by containerd"},
                mounts=[api.Mount(container_path="/usr/local/fake", host_path="/tmp", read_only=True)],
                devices=[api.DeviceSpec(container_path="/dev/fake0", host_path="/dev/null", permissions="rw")],
            ))
        return api.AllocateResponse(container_responses=responses)


def socket_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_ctime_ns


def serve(plugin: FakePlugin, path: str) -> grpc.Server:
    if os.path.exists(path):
        os.unlink(path)
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    deviceplugin_grpc.add_DevicePluginServicer_to_server(plugin, server)
    server.add_insecure_port(f"unix://{path}")
    server.start()
    return server


def register(kubelet_socket: str, endpoint: str, resource: str, version: str) -> None:
    with grpc.insecure_channel(f"unix://{kubelet_socket}") as channel:
        grpc.channel_ready_future(channel).result(timeout=5)
        deviceplugin_grpc.RegistrationStub(channel).Register(
            api.RegisterRequest(version=version, endpoint=endpoint, resource_name=resource,
                                options=api.DevicePluginOptions(get_preferred_allocation_available=True)),
            timeout=10,
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plugin-dir", required=True)
    parser.add_argument("--resource", required=True)
    parser.add_argument("--devices", required=True)
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--preferred", default="")
    parser.add_argument("--fail-allocate", default="")
    parser.add_argument("--control", default="")
    parser.add_argument("--version", default=API_VERSION)
    parser.add_argument("--allocate-delay-s", type=float, default=0.0)
    args = parser.parse_args()

    devices = Devices(args.devices)
    plugin = FakePlugin(devices, [d for d in args.preferred.split(",") if d], args.fail_allocate,
                        args.allocate_delay_s)
    endpoint = args.endpoint or f"fake-{os.getpid()}.sock"
    kubelet_socket = os.path.join(args.plugin_dir, KUBELET_SOCKET_NAME)
    server = None
    registered_on = None
    control_mtime = None
    registrations = 0
    while True:
        if args.control:
            try:
                mtime = os.stat(args.control).st_mtime_ns
                if mtime != control_mtime:
                    control_mtime = mtime
                    with open(args.control) as f:
                        devices.set_unhealthy(set(json.load(f).get("unhealthy", [])))
            except (FileNotFoundError, ValueError):
                pass
        identity = socket_identity(kubelet_socket)
        if identity is not None and identity != registered_on:
            if server is not None:
                server.stop(grace=None)
            server = serve(plugin, os.path.join(args.plugin_dir, endpoint))
            try:
                register(kubelet_socket, endpoint, args.resource, args.version)
            except (grpc.RpcError, grpc.FutureTimeoutError) as err:
                print(f"REGISTER_FAILED {err}", flush=True)
                time.sleep(0.2)
                continue
            registered_on = identity
            registrations += 1
            print(f"REGISTERED {registrations}", flush=True)
        time.sleep(0.03)


if __name__ == "__main__":
    sys.exit(main())
