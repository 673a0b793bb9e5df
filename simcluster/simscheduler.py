"""A small stand-in for kube-scheduler in the embedded cluster (where none runs): it watches pending
pods whose ``schedulerName`` is Tessera's and, for each, calls the extender over HTTP exactly as
kube-scheduler does with ``nodeCacheCapable: true``: ``filter`` with ``{Pod, NodeNames}``, then
``prioritize`` with the nodes that passed, then ``bind`` (``{PodName, PodNamespace, PodUID, Node}``) to
the top-scored node. Before the extender it checks what kube-scheduler checks itself of extended
resources (``ignoredByScheduler: false``): allocatable less what the node's pods request
(``simcluster.simfit``). Binds run on a few worker threads, as kube-scheduler's binding cycle runs
apart from its scheduling cycle. A pod that cannot be placed is tried again after ``retry_s``.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import orjson

from tessera.follow import follow
from tessera.kube import error_text, pod_event
from tessera.log import get_logger

from extender.kubeapi import KubeApi
from simcluster.simfit import ExtendedFit, extended_requests, insufficient_message

log = get_logger("simscheduler")


class ExtenderClient:
    """kube-scheduler's side of the extender's HTTP: one keep-alive connection per thread."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.timeout_s = parts.hostname, parts.port, timeout_s
        self._local = threading.local()

    def call(self, verb: str, args: dict) -> tuple[int, object]:
        return self.call_body(verb, orjson.dumps(args))

    def call_body(self, verb: str, body: bytes) -> tuple[int, object]:
        """``call`` with the request already encoded."""
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            try:
                conn.request("POST", f"/{verb}", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self._local.conn = None
                return resp.status, orjson.loads(data) if data else None
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


class SimScheduler:
    """Schedules pending pods of ``scheduler_name`` through the extender at ``extender_url``."""

    def __init__(self, api: KubeApi, extender_url: str, scheduler_name: str = "tessera-scheduler",
                 bind_workers: int = 4, retry_s: float = 1.0,
                 on_bound: Callable[[dict, str], None] | None = None, seed: int | None = None) -> None:
        self.api = api
        self.on_bound = on_bound
        self.client = ExtenderClient(extender_url)
        self._rng = random.Random(seed)
        self.scheduler_name = scheduler_name
        self.retry_s = retry_s
        self.bound = 0
        self.failures: dict[str, str] = {}
        self._queue: dict[str, dict] = {}
        self._cond = threading.Condition()
        self._inflight: set[str] = set()
        self._done: set[str] = set()  # UIDs bound here (a late watch event must not queue them again)
        self.fit = ExtendedFit()
        self._listing: tuple[list[str], bytes] = ([], b"[]")  # the node names, and encoded once per change
        self._stop = threading.Event()
        self._responses: dict[str, object] = {}  # open watch responses, closed on stop
        self._binds = ThreadPoolExecutor(bind_workers, thread_name_prefix="simsched-bind")
        self._nodes_seen = threading.Event()
        self._threads = [threading.Thread(target=self._watch_nodes, name="simsched-nodes", daemon=True),
                         threading.Thread(target=self._watch, name="simsched-watch", daemon=True),
                         threading.Thread(target=self._loop, name="simsched-loop", daemon=True)]

    def start(self) -> "SimScheduler":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for resp in list(self._responses.values()):
            try:
                getattr(resp, "shutdown", resp.close)()
            except Exception:  # noqa: BLE001 - already closed
                pass
        for t in self._threads:
            t.join(timeout=2)
        self._binds.shutdown(wait=True)

    def _wanted(self, pod: dict) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName") == self.scheduler_name and not spec.get("nodeName")
                and not (pod.get("metadata") or {}).get("deletionTimestamp"))

    def _offer(self, kind: str, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        with self._cond:
            if kind != "DELETED" and self._wanted(pod) and meta.get("uid") not in self._done:
                self._queue[key] = pod
                self._cond.notify_all()
            else:
                self._queue.pop(key, None)

    def _watch(self) -> None:
        """Pods: pending ones of this scheduler are queued; every pod feeds the extended-resource fit."""
        self._nodes_seen.wait()

        def listed(pods: list[dict]) -> None:
            self.fit.replace_pods(pods)
            for pod in pods:
                self._offer("ADDED", pod)

        self._follow("pods", self._pod_event, listed)

    def _watch_nodes(self) -> None:
        """Nodes: their names (sent to the extender) and allocatable extended resources."""
        names: dict[str, None] = {}

        def listed(nodes: list[dict]) -> None:
            names.clear()
            self.fit.replace_nodes(nodes)
            for node in nodes:
                names[node["metadata"]["name"]] = None
            self._publish(names)
            self._nodes_seen.set()

        def event(kind: str, node: dict) -> None:
            self.fit.node_event(kind, node)
            name = node["metadata"]["name"]
            if (kind == "DELETED") == (name in names):
                if kind == "DELETED":
                    names.pop(name)
                else:
                    names[name] = None
                self._publish(names)

        self._follow("nodes", event, listed)

    def _publish(self, names: dict[str, None]) -> None:
        listing = list(names)
        self._listing = (listing, orjson.dumps(listing))

    def _follow(self, kind: str, on_event: Callable[[str, dict], None],
                on_list: Callable[[list[dict]], None]) -> None:
        """List ``kind``, then watch it from there until stopped; list again after 410 Gone."""
        follow(kind, lambda: self.api.list(kind),
               lambda version: self.api.watch(kind, version, lambda r: self._responses.__setitem__(kind, r),
                                              timeout_s=30),
               on_list=on_list, on_event=on_event, stop=self._stop, log=log)

    def _pod_event(self, kind: str, pod: dict) -> None:
        self.fit.pod_event(kind, pod)
        self._offer(kind, pod)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                key = next((k for k in self._queue if k not in self._inflight), None)
                if key is None:
                    self._cond.wait(0.2)
                    continue
                pod = self._queue.pop(key)
            self.schedule_one(pod)

    def schedule_one(self, pod: dict) -> str | None:
        """filter -> prioritize -> bind (async) for one pod; the chosen node, or None."""
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        nodes, nodes_json = self._listing
        total = len(nodes)  # kube-scheduler's "0/N nodes": every node, not only those sent to the extender
        fitting, short = self.fit.filter(extended_requests(pod), nodes)
        if not fitting:
            self._retry(key, pod, insufficient_message(short, len(nodes)), event=True)
            return None
        if fitting is not nodes:
            nodes, nodes_json = fitting, orjson.dumps(fitting)
        pod_json = b'{"Pod":' + orjson.dumps(pod) + b',"NodeNames":'
        try:
            status, result = self.client.call_body("filter", pod_json + nodes_json + b"}")
            if status != 200 or result.get("Error"):
                raise RuntimeError(f"filter: {status} {result}")
            fits = result.get("NodeNames") or []
            if not fits:
                self._retry(key, pod, unschedulable_message(result, total), event=True)
                return None
            fits_json = nodes_json if fits == nodes else orjson.dumps(fits)
            status, scores = self.client.call_body("prioritize", pod_json + fits_json + b"}")
            if status != 200:
                raise RuntimeError(f"prioritize: {status} {scores}")
            best = select_host(scores, self._rng)
        except Exception as exc:  # noqa: BLE001 - the extender is away or refused: try again later
            self._retry(key, pod, str(exc)[:300])
            return None
        with self._cond:
            self._inflight.add(key)
        self.fit.assume(pod, best)
        self._binds.submit(self._bind, key, pod, best)
        return best

    def _bind(self, key: str, pod: dict, node: str) -> None:
        meta = pod["metadata"]
        try:
            status, result = self.client.call("bind", {"PodName": meta["name"], "PodNamespace": meta["namespace"],
                                                       "PodUID": meta.get("uid", ""), "Node": node})
            error = result.get("Error") if status == 200 else f"HTTP {status}"
        except Exception as exc:  # noqa: BLE001 - the extender is away
            error = str(exc)
        with self._cond:
            self._inflight.discard(key)
            if not error:
                self._done.add(meta.get("uid", ""))
                self._queue.pop(key, None)
        if error:
            self.fit.forget(pod)
            self._retry(key, pod, error)
        else:
            self.bound += 1
            self.failures.pop(key, None)
            if self.on_bound is not None:
                self.on_bound(pod, node)

    def _retry(self, key: str, pod: dict, reason: str, event: bool = False) -> None:
        """Schedule ``pod`` again after ``retry_s``; with ``event``, say why on the pod as kube-scheduler
        does (a FailedScheduling Event, once per new reason)."""
        if event and self.failures.get(key) != reason:
            self._post_failed_scheduling(pod, reason)
        self.failures[key] = reason
        log.info("pod_unschedulable", pod=key, reason=reason[:300])

        def again() -> None:
            if not self._stop.wait(self.retry_s):
                try:
                    fresh = self.api.get_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
                except Exception:  # noqa: BLE001 - gone
                    return
                self._offer("MODIFIED", fresh)

        threading.Thread(target=again, daemon=True).start()

    def _post_failed_scheduling(self, pod: dict, message: str) -> None:
        meta = pod["metadata"]
        body = pod_event(meta["namespace"], meta["name"], meta.get("uid", ""), "Warning", "FailedScheduling",
                         message, "tessera-simscheduler", "")
        try:
            self.api.core.create_namespaced_event(meta["namespace"], body, _preload_content=False)
        except Exception as exc:  # noqa: BLE001 - an Event is advice; scheduling goes on without it
            log.warning("failed_scheduling_event_not_posted", pod=meta["name"], reason=error_text(exc)[:200])


def unschedulable_message(result: dict, total: int) -> str:
    """kube-scheduler's FailedScheduling message from the extender's filter result:
    ``0/4 nodes are available: 1 node(s) didn't have 6 GPUs free, 3 node(s) had no GPU in exclusive mode.``"""
    counts: dict[str, int] = {}
    for failed in (result.get("FailedNodes") or {}, result.get("FailedAndUnresolvableNodes") or {}):
        for reason in failed.values():
            counts[reason] = counts.get(reason, 0) + 1
    parts = [f"{n} {reason}" if reason.startswith("node(s)") else f"{n} node(s): {reason}"
             for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return f"0/{total} nodes are available: {', '.join(parts)}."


def select_host(scores: list[dict], rng: random.Random) -> str:
    """The host with the highest score, ties broken at random as kube-scheduler's selectHost does
    (reservoir sampling over the top-scored nodes), so pods of one shape in a row do not all race for
    the first of several equally good nodes."""
    top = max(s["Score"] for s in scores)
    return rng.choice([s["Host"] for s in scores if s["Score"] == top])
