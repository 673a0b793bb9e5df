"""Scores the fleet under a new fragmentation model before a request needs it.

The learned shape model is rebuilt every ``window / 10`` binds; a new model gives every node a new
fragmentation, so the first prioritize after a rebuild would score the whole fleet again (milliseconds
at 5,000 nodes) on kube-scheduler's clock. After each bind, this thread builds the model if it is due
and scores the fleet for the request shapes prioritize saw last, while kube-scheduler binds and moves
on; the next prioritize finds its view ready and scores only nodes that changed since.
"""

from __future__ import annotations

import threading
from tessera.log import get_logger
from tessera.newest import Newest

from extender.cache import ClusterCache
from extender.placement import MODEL_POLICIES, PolicyContext, node_scores, resolve_policy
from tessera.podrequest import PodRequest

log = get_logger("extender")
RECENT_SHAPES = 16


class ModelWarmer:
    """``seen(request)`` from prioritize, ``poke()`` after a bind; ``start()``/``stop()`` the thread."""

    def __init__(self, cache: ClusterCache, ctx: PolicyContext, recent: int = RECENT_SHAPES) -> None:
        self.cache, self.ctx, self.recent = cache, ctx, recent
        self._requests: Newest[str, PodRequest] = Newest(recent)  # request key -> latest request
        self._warm_version: int | None = None
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.warmed = 0  # model versions warmed (for tests and logs)

    def seen(self, request: PodRequest) -> None:
        """Remember a request shape prioritize scored (call with the cache lock held)."""
        self._requests.put(request.key, request)

    def poke(self) -> None:
        """A bind landed: the model may be due for a rebuild."""
        self._due.set()

    def start(self) -> "ModelWarmer":
        if hasattr(self.ctx.shapes, "observe"):  # a learned model; a fixed one never changes
            self._thread = threading.Thread(target=self._run, name="extender-model-warmer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._due.wait()
            if self._stop.is_set():
                return
            self._due.clear()
            try:
                self.warm()
            except Exception:  # noqa: BLE001 - a failed warm-up costs the next request its time, no more
                log.exception("model_warmup_failed")

    def warm(self) -> bool:
        """Build the model if due and score the fleet for the recent shapes under it; True if it did."""
        with self.cache.lock:
            model = self.ctx.fragmentation_model()
            if model.version == self._warm_version:
                return False
            self._warm_version = model.version
            for request in self._requests.values():
                if resolve_policy(request, None, self.ctx) in MODEL_POLICIES:
                    node_scores(request, self.cache.fleet, self.ctx)
        self.warmed += 1
        return True
