"""``tessera.follow``: the one list-then-watch loop of every watcher, against the embedded API server over
real HTTP (the ``kubernetes`` client, watch streams read by ``tessera.kube.watch_events``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import kubernetes
import pytest
from structlog.testing import capture_logs

from simcluster.apiserver import ApiServer
from tessera.backoff import Backoff
from tessera.follow import follow, object_key, vanished
from tessera.kube import watch_events
from tessera.log import get_logger

HANG_GUARD_S = 60  # only a guard against a hang: every wait below ends on progress long before


class RecordedBackoff(Backoff):
    """A :class:`Backoff` that keeps each wait it hands out (and wakes whoever waits on ``changed``)."""

    def __init__(self, changed: threading.Condition, **options) -> None:
        super().__init__(**options)
        self.changed = changed
        self.waits: list[float] = []

    def failed(self) -> float:
        delay = super().failed()
        with self.changed:
            self.waits.append(delay)
            self.changed.notify_all()
        return delay


class Pods:
    """A watcher's view of the pods of ``default``: what each list and each event told it."""

    def __init__(self, url: str, watch_timeout_s: int = 1) -> None:
        self.core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(
            kubernetes.client.Configuration(host=url)))
        self.watch_timeout_s = watch_timeout_s
        self.lists: list[list[str]] = []
        self.events: list[tuple[str, str]] = []
        self.watches: list[str] = []  # the version each watch started from
        self.held: dict[str, dict] = {}
        self.deleted_by_relist: list[str] = []
        self.stop = threading.Event()
        self.stop_after_an_event = False
        self.changed = threading.Condition()
        self.before_first_watch: Callable[[], None] = lambda: None

    def list_all(self) -> tuple[list[dict], str]:
        doc = json.loads(self.core.list_namespaced_pod("default", _preload_content=False).data)
        return doc["items"], doc["metadata"]["resourceVersion"]

    def watch_from(self, version: str) -> Iterator[dict]:
        with self.changed:
            self.watches.append(version)
            self.changed.notify_all()
        if len(self.watches) == 1:
            self.before_first_watch()
        return watch_events(self.core.list_namespaced_pod(
            "default", watch=True, resource_version=version, allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s, _preload_content=False))

    def on_list(self, items: list[dict]) -> None:
        """As the extender's informer: what the new list lacks was deleted while no watch ran."""
        with self.changed:
            self.deleted_by_relist += vanished(self.held, items)
            self.held = {object_key(pod): pod for pod in items}
            self.lists.append(sorted(self.held))
            self.changed.notify_all()

    def on_event(self, kind: str, pod: dict) -> None:
        with self.changed:
            self.events.append((kind, pod["metadata"]["name"]))
            if kind == "DELETED":
                self.held.pop(object_key(pod), None)
            else:
                self.held[object_key(pod)] = pod
            self.changed.notify_all()
        if self.stop_after_an_event:
            self.stop.set()

    def wait(self, what: Callable[[], object]) -> None:
        with self.changed:
            assert self.changed.wait_for(what, HANG_GUARD_S), "the watcher made no progress"

    def follow(self, **options) -> threading.Thread:
        thread = threading.Thread(target=follow, args=("pods", self.list_all, self.watch_from), kwargs=dict(
            on_list=self.on_list, on_event=self.on_event, stop=self.stop, log=get_logger("test"), **options),
            daemon=True)
        thread.start()
        return thread

    def create(self, *names: str) -> None:
        for name in names:
            self.core.create_namespaced_pod("default", {"metadata": {"name": name},
                                                        "spec": {"containers": [{"name": "c", "image": "i"}]}})

    def delete(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, "default")


def stopped(pods: Pods, thread: threading.Thread) -> bool:
    """Set ``stop`` and wait for the follower to return (the watch in a read ends at its 1 s timeout)."""
    pods.stop.set()
    thread.join(HANG_GUARD_S)
    return not thread.is_alive()


def free_port() -> int:
    """A loopback port where nothing listens (an API server that was there has stopped)."""
    with ApiServer() as server:
        return server.port


def test_lists_then_watches_from_the_lists_version():
    with ApiServer(graceful_pod_deletion=False) as server:
        pods = Pods(server.url)
        pods.create("a", "b")
        pods.before_first_watch = lambda: pods.create("c")  # after the list: only its version's watch sees it
        thread = pods.follow()
        pods.wait(lambda: ("ADDED", "c") in pods.events)
        pods.delete("a")
        pods.wait(lambda: ("DELETED", "a") in pods.events)
        assert stopped(pods, thread)
    assert pods.lists == [["default/a", "default/b"]]
    assert pods.events == [("ADDED", "c"), ("DELETED", "a")]  # the listed pods are not sent again
    assert sorted(pods.held) == ["default/b", "default/c"]


def test_410_gone_lists_again_and_the_relist_reports_the_deletions_missed():
    with ApiServer(graceful_pod_deletion=False, history_size=5) as server:
        pods = Pods(server.url)
        pods.create("a", "b")

        def while_no_watch_runs() -> None:
            pods.delete("a")
            pods.create(*(f"x{i}" for i in range(8)))  # more than the history keeps: the version expires

        pods.before_first_watch = while_no_watch_runs
        with capture_logs() as logs:
            thread = pods.follow()
            pods.wait(lambda: len(pods.lists) == 2)
            pods.create("y")
            pods.wait(lambda: ("ADDED", "y") in pods.events)
            assert stopped(pods, thread)
    assert pods.lists[1] == ["default/b"] + [f"default/x{i}" for i in range(8)]
    assert pods.deleted_by_relist == ["default/a"]
    assert pods.events == [("ADDED", "y")]
    assert [(e["event"], e["resource"]) for e in logs if e.get("component") == "test"] == [("watch_expired", "pods")]


def test_errors_back_off_growing_and_a_list_resets_the_backoff():
    port = free_port()
    pods = Pods(f"http://127.0.0.1:{port}")
    retry = RecordedBackoff(pods.changed, base_s=0.01, cap_s=0.04, rand=lambda: 0.0)  # no jitter: the ceiling
    with capture_logs() as logs:
        thread = pods.follow(retry=retry)
        pods.wait(lambda: len(retry.waits) >= 4)
        with ApiServer(port=port, graceful_pod_deletion=False):
            pods.wait(lambda: pods.watches)  # listed, and watching
            assert retry.failures == 0
            assert stopped(pods, thread)
    assert retry.waits[:4] == pytest.approx([0.01, 0.02, 0.04, 0.04])
    failed = [e for e in logs if e.get("component") == "test"]
    assert len(failed) == len(retry.waits)
    assert all((e["event"], e["resource"]) == ("watch_failed", "pods") and "Connection refused" in e["reason"]
               for e in failed)


def test_stop_ends_following_after_the_event_in_hand():
    with ApiServer(graceful_pod_deletion=False) as server:
        pods = Pods(server.url, watch_timeout_s=600)  # the stream itself would run for ten minutes
        pods.stop_after_an_event = True
        thread = pods.follow()
        pods.wait(lambda: pods.watches)
        pods.create("a", "b")
        thread.join(HANG_GUARD_S)
        assert not thread.is_alive()
    assert pods.events == [("ADDED", "a")] and pods.watches == [pods.watches[0]]


def test_stop_ends_following_during_a_backoff_wait():
    pods = Pods(f"http://127.0.0.1:{free_port()}")
    retry = RecordedBackoff(pods.changed, base_s=300, cap_s=300)  # the first wait alone is 150-300 s
    thread = pods.follow(retry=retry)
    pods.wait(lambda: retry.waits)
    assert stopped(pods, thread)
    assert pods.lists == [] and len(retry.waits) == 1


@pytest.mark.parametrize("held,listed,gone", [
    (["default/a", "default/b", "other/a"], ["default/b"], ["default/a", "other/a"]),
    (["n1", "n2"], ["n2", "n1"], []),
])
def test_vanished_names_what_the_list_no_longer_has(held, listed, gone):
    def obj(key: str) -> dict:
        namespace, _, name = key.rpartition("/")
        return {"metadata": {"name": name, **({"namespace": namespace} if namespace else {})}}

    assert vanished(held, [obj(k) for k in listed]) == gone
