"""The devices' health, streamed to the kubelet (DRAResourceHealth.NodeWatchResources, KEP 4680).

The kubelet opens one stream per driver when the driver registers with the service listed; it shows
what the stream says in the status of each container that uses a device of a claim
(``status.containerStatuses[].allocatedResourcesStatus``: ``claim:<claim>/<request>``, each device
``Healthy`` or ``Unhealthy`` with the reason). Every device of this node's pool is sent at once when
the stream opens, again on each change of a GPU's health, and every ``resend_s`` otherwise, within
the timeout the devices carry (after which the kubelet shows ``Unknown``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tessera.kubeletapi import drahealth_grpc, drahealth_pb2
from tessera.log import get_logger

log = get_logger("draplugin")
RESEND_S = 10.0
TIMEOUT_S = 60


class HealthStream(drahealth_grpc.DRAResourceHealthServicer):
    """Answers the kubelet's NodeWatchResources; :meth:`notify` when a GPU's health changed."""

    def __init__(self, pool: str, devices: Callable[[], dict[str, int]], reason: Callable[[int], str | None],
                 resend_s: float = RESEND_S) -> None:
        self.pool, self.devices, self.reason, self.resend_s = pool, devices, reason, resend_s
        self._cond = threading.Condition()
        self._version = 0
        self._stopped = False

    def notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def snapshot(self) -> drahealth_pb2.NodeWatchResourcesResponse:
        """Every device's health now (``devices()`` maps each device name to its GPU's index)."""
        now = int(time.time())
        response = drahealth_pb2.NodeWatchResourcesResponse()
        for name, index in sorted(self.devices().items()):
            why = self.reason(index)
            response.devices.add(
                device=drahealth_pb2.DeviceIdentifier(pool_name=self.pool, device_name=name),
                health=drahealth_pb2.UNHEALTHY if why else drahealth_pb2.HEALTHY, last_updated_time=now,
                health_check_timeout_seconds=TIMEOUT_S, message=(why or "")[:1024])
        return response

    def NodeWatchResources(self, request, context):  # noqa: N802
        log.info("health_stream_opened")
        seen = -1
        try:
            while context.is_active():
                with self._cond:
                    if self._stopped:
                        return
                    if self._version == seen:
                        self._cond.wait(timeout=self.resend_s)
                    if self._stopped:
                        return
                    seen = self._version
                yield self.snapshot()
        finally:
            log.info("health_stream_closed")
