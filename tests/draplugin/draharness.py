"""The DRA driver's kubelet-facing server on real unix sockets, with claims from a dict."""

from __future__ import annotations

from pathlib import Path

import grpc
from draplugin.checkpoint import Checkpoint
from draplugin.devices import select_gpus
from draplugin.prepare import DraService, PrepareError, PrepareSettings
from draplugin.registration import PluginServer, RegistrationService
from tessera.gpu import GpuInfo
from tessera.kubeletapi import dra_grpc

NODE, DRIVER = "gpu-node-7", "gpu.tessera.io"
KEY = b"k" * 64
GPUS = [GpuInfo(index=4, uuid="GPU-aaaaaaaa-0000-0000-0000-000000000004", name="NVIDIA A100-SXM4-80GB",
                minor_number=6, memory_total_mib=81920, sm_count=108, compute_capability=(8, 0)),
        GpuInfo(index=5, uuid="GPU-aaaaaaaa-0000-0000-0000-000000000005", name="NVIDIA A100-SXM4-80GB",
                minor_number=2, memory_total_mib=81920, sm_count=108, compute_capability=(8, 0)),
        GpuInfo(index=6, uuid="GPU-aaaaaaaa-0000-0000-0000-000000000006", name="NVIDIA A100-SXM4-40GB",
                minor_number=0, memory_total_mib=40960, sm_count=108, compute_capability=(8, 0))]
MODES = {6: "mps"}
PIPE, SHM = "/run/tessera/mps/pipe", "/run/tessera/mps/shm"


def claim(name: str, uid: str, devices: list[tuple[str, str]], *, pool: str = NODE, namespace: str = "team-a",
          allocated: bool = True, consumed: dict[str, str] | None = None) -> dict:
    """A ResourceClaim as the API server returns it, allocated ``devices`` as (request, device); with
    ``consumed``, each result consumed that capacity (an MPS share) under a share ID."""
    doc = {"metadata": {"name": name, "namespace": namespace, "uid": uid}, "status": {}}
    if allocated:
        results = [{"request": request, "driver": DRIVER, "pool": pool, "device": device} for request, device in devices]
        if consumed is not None:
            for n, result in enumerate(results):
                result.update(consumedCapacity=dict(consumed), shareID=f"5ba7e0de-0000-4000-8000-00000000000{n}")
        doc["status"]["allocation"] = {"devices": {"results": results}}
    return doc


class Driver:
    """One driver's service on its sockets, the claims it can read, and a stub of the kubelet's side."""

    def __init__(self, root: Path, claims: dict[tuple[str, str], dict], published: dict | None = None,
                 mig=None) -> None:
        self.root, self.claims, self.reads = root, claims, []
        self.published, self.mig = published, mig   # default: GPUS in MODES; mig: an open Nvml
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
        settings = PrepareSettings(DRIVER, NODE, str(self.cdi_dir), str(self.root / "host"), KEY, PIPE, SHM)
        published = self.published or {g.name: g for g in select_gpus(GPUS, [g.index for g in GPUS], MODES)}
        self.checkpoint = Checkpoint(str(self.root / "plugins" / DRIVER / "checkpoint.json"))
        service = DraService(settings, lambda: published, self.read_claim, self.checkpoint, mig=self.mig)
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
