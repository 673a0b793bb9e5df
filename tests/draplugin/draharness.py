"""The DRA driver's kubelet-facing server on real unix sockets, with claims from a dict."""

from __future__ import annotations

from pathlib import Path

import grpc
from draplugin.checkpoint import Checkpoint
from draplugin.devices import PublishedGpu
from draplugin.prepare import DraService, PrepareError, PrepareSettings
from draplugin.registration import PluginServer, RegistrationService
from tessera.gpu import GpuInfo
from tessera.kubeletapi import dra_grpc

NODE, DRIVER = "gpu-node-7", "gpu.tessera.io"
KEY = b"k" * 64
GPUS = [GpuInfo(index=4, uuid="GPU-aaaaaaaa-0000-0000-0000-000000000004", name="NVIDIA A100-SXM4-80GB",
                minor_number=6, memory_total_mib=81920, sm_count=108, compute_capability=(8, 0)),
        GpuInfo(index=5, uuid="GPU-aaaaaaaa-0000-0000-0000-000000000005", name="NVIDIA A100-SXM4-80GB",
                minor_number=2, memory_total_mib=81920, sm_count=108, compute_capability=(8, 0))]


def claim(name: str, uid: str, devices: list[tuple[str, str]], *, pool: str = NODE, namespace: str = "team-a",
          allocated: bool = True) -> dict:
    """A ResourceClaim as the API server returns it, allocated ``devices`` as (request, device)."""
    doc = {"metadata": {"name": name, "namespace": namespace, "uid": uid}, "status": {}}
    if allocated:
        doc["status"]["allocation"] = {"devices": {"results": [
            {"request": request, "driver": DRIVER, "pool": pool, "device": device} for request, device in devices]}}
    return doc


class Driver:
    """One driver's service on its sockets, the claims it can read, and a stub of the kubelet's side."""

    def __init__(self, root: Path, claims: dict[tuple[str, str], dict]) -> None:
        self.root, self.claims, self.reads = root, claims, []
        self.cdi_dir = root / "cdi"
        self.dra_socket = str(root / "plugins" / DRIVER / "dra.sock")
        self.registration_socket = str(root / "plugins_registry" / f"{DRIVER}-reg.sock")
        self.server: PluginServer | None = None

    def read_claim(self, namespace: str, name: str) -> dict:
        self.reads.append((namespace, name))
        try:
            return self.claims[(namespace, name)]
        except KeyError:
            raise PrepareError(f"ResourceClaim {namespace}/{name} does not exist") from None

    def start(self) -> "Driver":
        """Serve (again, as after a restart: the checkpoint is read anew)."""
        self.stop()
        settings = PrepareSettings(DRIVER, NODE, str(self.cdi_dir), str(self.root / "host"), KEY)
        published = {f"gpu-{g.index}": PublishedGpu(f"gpu-{g.index}", g) for g in GPUS}
        self.checkpoint = Checkpoint(str(self.root / "plugins" / DRIVER / "checkpoint.json"))
        service = DraService(settings, lambda: published, self.read_claim, self.checkpoint)
        self.registration = RegistrationService(DRIVER, self.dra_socket)
        self.server = PluginServer(service, self.registration, self.dra_socket, self.registration_socket)
        self.server.start()
        self.channel = grpc.insecure_channel(f"unix://{self.dra_socket}")
        self.stub = dra_grpc.DRAPluginStub(self.channel)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.channel.close()
            self.server.stop()
            self.server = None
