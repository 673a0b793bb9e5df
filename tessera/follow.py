"""Follow a Kubernetes resource: list it, then watch it from the list's resourceVersion, until stopped.

The one list-then-watch loop of every Tessera watcher (the extender's informer, the device plugin's
pod and node watches, the simulated kubelet and scheduler)::

    follow("pods", api.list_pods, lambda version: api.watch("pods", version, keep_response),
           on_list=replace_all, on_event=apply, stop=stop, log=log)

- ``list_all()`` returns the items and the list's resourceVersion; ``on_list(items)`` gets every
  item, so the caller replaces what it holds: an object it holds that is not in the list was deleted
  while no watch ran (:func:`vanished` names them).
- ``watch_from(version)`` returns the events after ``version`` (:func:`tessera.kube.watch_events`);
  each moves the version on, BOOKMARKs included, and each other one goes to ``on_event(type, obj)``.
  A watch that ends (its timeout) is opened again from the last version seen.
- 410 Gone (:class:`tessera.kube.WatchExpired`): the history no longer reaches back to that version,
  so list again (``watch_expired``, info).
- Any other failure (``watch_failed``, warning) waits its :class:`tessera.backoff.Backoff` delay and
  tries again, from the last version seen (or from a new list, ``relist_after_error``); every list or
  event that arrives resets the backoff.
- ``stop`` set: returns after the event in hand, during a backoff wait, or at the next failure. A watch
  blocked in a read ends when the caller closes its response (``watch_from`` can hand it over).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import structlog

from tessera.backoff import Backoff
from tessera.kube import WatchExpired, error_text

Lister = Callable[[], tuple[list[dict], str]]
WatchFrom = Callable[[str], Iterable[dict]]


def object_key(obj: dict) -> str:
    """``namespace/name`` of a namespaced object, ``name`` of a cluster-scoped one."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    return f"{meta['namespace']}/{name}" if meta.get("namespace") else name


def vanished(held: Iterable[str], items: Iterable[dict]) -> list[str]:
    """The keys (:func:`object_key`) in ``held`` that the list ``items`` no longer has, in ``held``'s order."""
    listed = {object_key(obj) for obj in items}
    return [key for key in held if key not in listed]


def follow(resource: str, list_all: Lister, watch_from: WatchFrom, *, on_list: Callable[[list[dict]], None],
           on_event: Callable[[str, dict], None], stop: threading.Event, log: structlog.typing.FilteringBoundLogger,
           retry: Backoff | None = None, relist_after_error: bool = False,
           describe: Callable[[BaseException], str] = error_text) -> None:
    """List ``resource``, then watch it from there, until ``stop`` is set; see the module docstring.

    ``log`` is the caller's logger (its events carry ``resource``); ``describe`` turns a failure into the
    one line logged as its ``reason``.
    """
    retry = retry or Backoff()
    version: str | None = None
    while not stop.is_set():
        try:
            if version is None:
                items, version = list_all()
                on_list(items)
                retry.reset()
            for event in watch_from(version):
                retry.reset()
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                if event.get("type") != "BOOKMARK":
                    on_event(event["type"], obj)
                if stop.is_set():
                    return
        except WatchExpired:
            log.info("watch_expired", resource=resource)
            version = None
        except Exception as exc:  # noqa: BLE001 - the API server is away: retry, backing off
            if stop.is_set():
                return
            log.warning("watch_failed", resource=resource, reason=describe(exc)[:300])
            if relist_after_error:
                version = None
            retry.wait(stop)
