"""One active replica: leader election on a coordination/v1 Lease, as client-go's leaderelection does
it. The holder renews ``renewTime`` every ``retry_s``; a replica takes over a lease nobody renewed for
``lease_duration_s`` (optimistic concurrency: a PUT with a stale resourceVersion loses); a leader
that could not renew for the lease duration steps down; ``stop`` gives the lease up so a standby
takes over at once."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable

from tessera.log import get_logger

from extender.kubeapi import KubeApi
from tessera.kube import error_text

log = get_logger("extender")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _micro(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


class LeaseElector:
    """Campaigns for one Lease; ``is_leader()`` says whether this replica holds it now."""

    def __init__(self, api: KubeApi, namespace: str, name: str, identity: str, lease_duration_s: float = 15.0,
                 retry_s: float = 2.0, on_change: Callable[[bool], None] | None = None) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.lease_duration_s, self.retry_s = lease_duration_s, retry_s
        self.on_change = on_change
        self._valid_until = 0.0
        self._leader = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def is_leader(self) -> bool:
        return self._leader and time.monotonic() < self._valid_until

    def start(self) -> "LeaseElector":
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if release and self._leader:
            self._release()
        self._set(False)

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            log.info("leader_elected" if leader else "leader_lost", lease=f"{self.namespace}/{self.name}",
                     identity=self.identity)
            if self.on_change is not None:
                self.on_change(leader)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                held = self.try_acquire_or_renew()
            except Exception as exc:  # noqa: BLE001 - the API server is away: keep trying
                log.warning("lease_update_failed", lease=f"{self.namespace}/{self.name}", reason=error_text(exc)[:200])
                held = None
            if held:
                self._valid_until = started + self.lease_duration_s
                self._set(True)
            elif held is False or time.monotonic() >= self._valid_until:
                self._set(False)
            self._stop.wait(self.retry_s)

    def try_acquire_or_renew(self) -> bool:
        """One round: True if this replica holds the lease afterwards."""
        now = _now()
        lease = self.api.get_lease(self.namespace, self.name)
        spec_new = {"holderIdentity": self.identity, "leaseDurationSeconds": int(round(self.lease_duration_s)),
                    "acquireTime": _micro(now), "renewTime": _micro(now), "leaseTransitions": 0}
        if lease is None:
            try:
                self.api.create_lease(self.namespace, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                                       "metadata": {"name": self.name, "namespace": self.namespace},
                                                       "spec": spec_new})
            except Exception as exc:  # noqa: BLE001 - another replica created it first
                log.info("lease_create_lost", reason=error_text(exc)[:200])
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder != self.identity:
            renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
            duration = spec.get("leaseDurationSeconds") or self.lease_duration_s
            if holder and renewed is not None and (now - renewed).total_seconds() < duration:
                return False
            spec_new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            log.info("lease_takeover", lease=f"{self.namespace}/{self.name}", previous=holder)
        else:
            spec_new["acquireTime"] = spec.get("acquireTime") or spec_new["acquireTime"]
            spec_new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0)
        lease["spec"] = spec_new
        try:
            self.api.replace_lease(self.namespace, lease)
        except Exception as exc:  # noqa: BLE001 - 409: someone else wrote it first
            log.info("lease_write_lost", reason=error_text(exc)[:200])
            return False
        return True

    def _release(self) -> None:
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["renewTime"] = _micro(_now() - datetime.timedelta(seconds=self.lease_duration_s * 2))
            self.api.replace_lease(self.namespace, lease)
            log.info("lease_released", lease=f"{self.namespace}/{self.name}")
        except Exception as exc:  # noqa: BLE001 - it expires on its own
            log.warning("lease_release_failed", reason=error_text(exc)[:200])
