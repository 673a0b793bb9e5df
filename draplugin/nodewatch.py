"""This node's Node object, followed (list and watch by name), for its ``tessera.io/node-config`` label."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import kubernetes

from tessera.follow import follow
from tessera.kube import watch_events
from tessera.log import get_logger

log = get_logger("draplugin")
TIMEOUT_S = 5


def read_own_node(client: kubernetes.client.ApiClient, node: str) -> dict | None:
    """The Node, or None when it does not exist or cannot be read (logged: the driver starts on its
    default config and the watch catches up)."""
    try:
        return json.loads(kubernetes.client.CoreV1Api(client).read_node(
            node, _preload_content=False, _request_timeout=TIMEOUT_S).data)
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("node_read_failed", node=node, reason=str(exc))
        return None


class OwnNodeWatch:
    """Hands every version of the Node named ``node`` to ``on_node``, from a thread of its own."""

    def __init__(self, client: kubernetes.client.ApiClient, node: str, on_node: Callable[[dict], None]) -> None:
        self.core = kubernetes.client.CoreV1Api(client)
        self.node, self.on_node = node, on_node
        self._stop = threading.Event()
        self._resp = None
        self._thread = threading.Thread(target=self._run, name="dra-nodewatch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.close()  # ends a watch blocked in a read
            except Exception:  # noqa: BLE001 - already closed
                pass
        self._thread.join(timeout=5)

    def _selector(self) -> str:
        return f"metadata.name={self.node}"

    def _list(self) -> tuple[list[dict], str]:
        doc = json.loads(self.core.list_node(field_selector=self._selector(), _preload_content=False,
                                             _request_timeout=TIMEOUT_S).data)
        return doc.get("items", []), doc["metadata"]["resourceVersion"]

    def _watch(self, version: str):
        self._resp = self.core.list_node(field_selector=self._selector(), watch=True, resource_version=version,
                                         timeout_seconds=60, _preload_content=False)
        return watch_events(self._resp)

    def _run(self) -> None:
        follow("node", self._list, self._watch, on_list=lambda nodes: self.on_node(nodes[0] if nodes else {}),
               on_event=lambda kind, node: kind in ("ADDED", "MODIFIED") and self.on_node(node),
               stop=self._stop, log=log, relist_after_error=True)
